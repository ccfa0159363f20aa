"""Why each version is deployed (its roles), and pruning with a report: read by the CLI's
`versions` commands and served by the admin API (`AdminControl.prune`, POST /admin/models/{m}/versions/prune)."""

from __future__ import annotations

from typing import Any

from serving.registry.store import Registry


def roles(reg: Registry, model: str) -> dict[str, list[str]]:
    """Why each version is deployed now: live (with its share), shadow, warm, rollback target."""
    out: dict[str, list[str]] = {}
    for version, weight in reg.get_traffic(model).items():
        if weight > 0:
            out.setdefault(version, []).append(f"live {weight:g}%")
    shadow = reg.get_shadow(model)
    if shadow:
        out.setdefault(shadow.version, []).append(f"shadow {shadow.share:g}%")
    target = reg.rollback_target(model)
    if target:
        out.setdefault(target, []).append("rollback target")
    for version in reg.warm_versions(model):
        out.setdefault(version, []).append("warm")
    return out


class _Undo(Exception):
    """Raised to roll a dry run's transaction back."""


def prune_report(reg: Registry, model: str, keep: int, *, dry_run: bool, actor: str) -> dict[str, Any]:
    """Retire all but the newest `keep` versions (the registry's rules) and say what stays and why.

    A dry run computes the same answer inside a transaction that is then rolled back, touching
    no files (delete_files=False). A real prune is recorded as a 'pruned' event by `actor`.

    Raises:
        RegistryError: `keep` is out of range.
    """
    why = roles(reg, model)
    doomed: list[str] = []
    if dry_run:
        try:
            with reg.transaction():
                doomed = reg.prune(model, keep=keep, delete_files=False)
                raise _Undo
        except _Undo:
            pass
    else:
        doomed = reg.prune(model, keep=keep)
        if doomed:
            reg.record_event(model, "pruned", f"versions {doomed} pruned (keep {keep})",
                             {"versions": doomed, "keep": keep, "actor": actor})
    available = [v.version for v in reg.list_versions(model) if v.status == "available"]
    kept = [v for v in available if v not in doomed]
    return {"model": model, "keep": keep, "dry_run": dry_run, "pruned": doomed, "kept": kept,
            "roles": {v: why.get(v) or ["newest"] for v in kept}}
