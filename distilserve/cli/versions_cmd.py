"""`distilserve versions list|show|diff|prune`.

`list`, `show` and `diff` only read the registry file (no server needed; nothing is written).
`prune` changes state, so it asks the server's admin API: the registry and the folders it
retires are the server's. Nothing here imports Ray, torch or FastAPI.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from distilserve.cli.admin import CliError, add_common, request

if TYPE_CHECKING:
    from serving.registry import Change, Registry, VersionDiff

DEFAULT_REGISTRY = Path(".distilserve/registry.db")


def registry_options() -> argparse.ArgumentParser:
    """Flags shared by every registry-reading command, given after the subcommand."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--registry", default=str(DEFAULT_REGISTRY), help="SQLite registry file or postgresql:// URL (read only)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("versions", help="versions of a model, their lineage and retention")
    vsub = p.add_subparsers(dest="versions_command", required=True, metavar="WHAT")
    common = registry_options()

    ls = vsub.add_parser("list", parents=[common], help="every version with its role and traffic")
    ls.add_argument("model", nargs="?", default="sentiment")
    ls.set_defaults(func=_list)

    show = vsub.add_parser("show", parents=[common], help="one version: lineage, config, metrics")
    show.add_argument("model")
    show.add_argument("version")
    show.set_defaults(func=_show)

    diff = vsub.add_parser("diff", parents=[common], help="lineage diff: model, code, data, config, metrics")
    diff.add_argument("model")
    diff.add_argument("a")
    diff.add_argument("b")
    diff.set_defaults(func=_diff)

    prune = vsub.add_parser("prune", help="retire all but the newest N versions on the server (admin API; "
                            "never live, shadow, warm or rollback target)")
    prune.add_argument("model", nargs="?", default="sentiment")
    prune.add_argument("--keep", type=int, default=3, help="newest versions to keep (default 3)")
    prune.add_argument("--dry-run", action="store_true", help="say what would be pruned; change nothing")
    prune.add_argument("--json", action="store_true", help="machine-readable output")
    add_common(prune)
    prune.set_defaults(func=_prune)


def open_registry(location: str) -> Registry:
    from serving.registry import Registry
    from serving.registry.db import is_url

    path = Path(location)
    if not is_url(location) and not path.is_file():
        raise CliError(f"no registry at {str(path)!r}: pass --registry, or run from the folder `distilserve serve` ran in")
    return Registry(location)


def _registry(args: argparse.Namespace, model: str) -> Registry:
    reg = open_registry(args.registry)
    if not reg.list_versions(model):
        raise CliError(f"model {model!r} has no versions in {str(args.registry)!r}")
    return reg


def when(ts: float) -> str:
    """Local time to the second: what an operator compares with their clock and logs."""
    return dt.datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def table(header: tuple[str, ...], rows: list[tuple[str, ...]], right: frozenset[int] = frozenset()) -> str:
    """Aligned plain-text columns; indices in `right` are right-aligned (numbers)."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(r: tuple[str, ...]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True))]
        return "  ".join(cells).rstrip()

    return "\n".join([line(header), line(tuple("-" * w for w in widths)), *map(line, rows)])


def _short(sha: str, n: int = 12) -> str:
    return sha.split(":", 1)[-1][:n]


def _list(args: argparse.Namespace) -> int:
    from serving.registry.roles import roles

    reg = _registry(args, args.model)
    versions, why = reg.list_versions(args.model), roles(reg, args.model)
    if args.json:
        print(json.dumps([{"version": v.version, "status": v.status, "roles": why.get(v.version, []),
                           "kind": v.card.kind, "accuracy": v.card.accuracy, "parameters": v.card.parameters,
                           "bytes": v.card.bytes, "weights_sha256": v.card.lineage.weights_sha256,
                           "code_commit": v.card.lineage.code_commit, "created_at": v.card.created_at}
                          for v in versions], indent=2))
        return 0
    rows = []
    for v in versions:
        b1, lin = v.card.latency_at(1), v.card.lineage
        rows.append((v.version, v.status, ", ".join(why.get(v.version, [])) or "-", v.card.kind,
                     f"{v.card.accuracy:.4f}", f"{b1.p50_ms:.2f}" if b1 else "-", f"{v.card.parameters:,}",
                     _short(lin.weights_sha256), _short(lin.code_commit, 8) + ("+dirty" if lin.code_dirty else ""),
                     v.card.created_at[:19].replace("T", " ")))
    header = ("version", "status", "role", "kind", "accuracy", "b1 p50 ms", "params", "weights", "code",
              "created (UTC)")
    print(f"{args.model}: {len(versions)} versions, "
          f"{sum(v.status == 'available' for v in versions)} deployable")
    print(table(header, rows, right=frozenset({0, 4, 5, 6})))
    return 0


def _show(args: argparse.Namespace) -> int:
    from serving.registry.diff import flatten
    from serving.registry.roles import roles

    reg = _registry(args, args.model)
    rec = reg.get_version(args.model, args.version)
    if rec is None:
        known = [v.version for v in reg.list_versions(args.model)]
        raise CliError(f"model {args.model!r} has no version {args.version!r}; versions: {known}")
    if args.json:
        print(json.dumps(rec.model_dump(mode="json"), indent=2))
        return 0
    card, lin = rec.card, rec.card.lineage
    role = ", ".join(roles(reg, args.model).get(rec.version, [])) or "not deployed"
    fields: list[tuple[str, Any]] = [
        ("status", f"{rec.status} ({role})"),
        ("path", rec.path),
        ("registered", when(rec.registered_at)),
        ("created", card.created_at),
        ("kind", f"{card.kind}, {card.parameters:,} parameters, {card.bytes:,} bytes, {card.dtype}"),
        ("labels", ", ".join(card.labels)),
        ("accuracy", f"{card.accuracy:.4f} ± {card.accuracy_std:.4f} on {card.eval_examples:,} held-out rows"),
        *((f"latency b{s.batch_size}", f"p50 {s.p50_ms:.2f} ms, p99 {s.p99_ms:.2f} ms ({s.runs} runs)")
          for s in card.latency),
        ("measured on", card.measured_on or "-"),
        ("", ""),
        ("weights", f"sha256:{lin.weights_sha256}"),
        ("code", f"{lin.code_commit}{' (dirty work tree)' if lin.code_dirty else ''}"),
        ("data", lin.data_fingerprint),
        ("config", lin.config_hash),
        ("base model", lin.base_model or "-"),
        ("teacher", lin.teacher_version or "-"),
    ]
    print(f"{args.model} version {rec.version}")
    width = max(len(k) for k, _ in fields)
    for key, value in fields:
        print(f"  {key:<{width}}  {value}".rstrip())
    flat = flatten(lin.config)
    if flat:
        print("  config:")
        kw = max(len(k) for k in flat)
        for key, value in flat.items():
            print(f"    {key:<{kw}}  {json.dumps(value, default=str)}")
    return 0


def _diff(args: argparse.Namespace) -> int:
    reg = _registry(args, args.model)
    for v in (args.a, args.b):
        if reg.get_version(args.model, v) is None:
            raise CliError(f"model {args.model!r} has no version {v!r}")
    d = reg.diff(args.model, args.a, args.b)
    lin = reg.get_version(args.model, args.a).card.lineage  # type: ignore[union-attr] - checked above
    same = {"code": f"{lin.code_commit[:12]}{', dirty' if lin.code_dirty else ', clean'}",
            "data": lin.data_fingerprint}
    print(d.model_dump_json(indent=2) if args.json else render_diff(d, same))
    return 0


# Long values (hashes, lists) do not fit beside each other; a short one reads best as `a -> b`.
_INLINE = 24


def render_diff(d: VersionDiff, same: dict[str, str] | None = None) -> str:
    """A summary line per section (changed keys, or 'unchanged'), then each change.

    `same` gives what an unchanged section holds (e.g. the commit), shown beside 'unchanged'.
    """
    from serving.registry.diff import SECTIONS

    lines = [f"{d.model}: version {d.a} -> {d.b}"]
    if not d.changes:
        return "\n".join([*lines, "  identical lineage, config and metrics"]) + "\n"
    for section in SECTIONS:
        keys = [_key(c) for c in d.section(section)]
        held = f" ({(same or {})[section]})" if section in (same or {}) else ""
        lines.append(f"  {section:<8} {'changed: ' + ', '.join(keys) if keys else 'unchanged' + held}")
    for section in SECTIONS:
        changes = d.section(section)
        if not changes:
            continue
        lines += ["", f"{section}:"]
        kw = max(len(_key(c)) for c in changes)
        for c in changes:
            a, b = _value(c.a, c.kind == "added"), _value(c.b, c.kind == "removed")
            if len(a) <= _INLINE and len(b) <= _INLINE:
                lines.append(f"  {_key(c):<{kw}}  {a} -> {b}")
            else:
                lines += [f"  {_key(c)}", f"    - v{d.a}  {a}", f"    + v{d.b}  {b}"]
    return "\n".join(lines) + "\n"


def _key(c: Change) -> str:
    # The section heading already says "config"; the dotted path alone names the key.
    return c.key.removeprefix("config.") if c.section == "config" and c.key != "config_hash" else c.key


def _value(value: Any, absent: bool) -> str:
    if absent:
        return "(absent)"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _prune(args: argparse.Namespace) -> int:
    if args.keep < 1:
        raise CliError(f"--keep must be >= 1 (the newest version always stays deployable), got {args.keep}")
    out = request(args, "POST", f"/admin/models/{args.model}/versions/prune",
                  {"keep": args.keep, "dry_run": args.dry_run})
    if args.json:
        print(json.dumps(out, indent=2))
        return 0
    verb = "would prune" if args.dry_run else "pruned"
    doomed = out["pruned"]
    print(f"{args.model}: {verb} {', '.join(doomed) if doomed else 'nothing'} (keep newest {args.keep})")
    for v in out["kept"]:
        print(f"  keeps {v:>4}  {', '.join(out['roles'].get(v, []))}")
    return 0
