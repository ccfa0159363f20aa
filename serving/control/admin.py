"""`AdminControl`: what the admin API may do to the control state (traffic, warm versions,
rollouts) and read of it. Blocking registry calls run in a thread, never on the event loop.

Commands act at once, through the same decide() and the same transaction as the controller's
ticks; the controller then carries on from the stored state. A controller that owns the
control state can stand behind this same interface.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from pydantic import ValidationError

from serving.control.metrics_source import Snapshot, TextMetricsSource, counters_delta, shadow_delta
from serving.control.rollout_doc import RolloutDoc
from serving.control.rollout_start import RolloutRefused, StartRequest, start_rollout
from serving.control.rollouts import COMMANDS, NoActiveRollout, RolloutController
from serving.control.webhooks import WebhookNotifier
from serving.dataplane import blocking
from serving.errors import ApiError, describe_validation
from serving.registry import Registry, RegistryError
from serving.registry.roles import prune_report

Ready = Callable[[str, str], Awaitable[bool]]
_NOTIFIERS: dict[tuple[str, ...], WebhookNotifier] = {}


class AdminControl:
    def __init__(self, registry: Registry, models: list[str], refresh: Callable[[], None],
                 metrics_text: Callable[[], bytes], ready: Ready, webhooks: Sequence[str] = ()) -> None:
        self.registry, self.models, self._refresh = registry, models, refresh
        self._metrics_text, self._ready = metrics_text, ready
        urls = tuple(webhooks)
        self.notifier = _NOTIFIERS.setdefault(urls, WebhookNotifier(urls))

    # ---- traffic and deployment ------------------------------------------------------------
    async def status(self, model: str) -> dict:
        return await blocking(self._status, model)

    def _status(self, model: str) -> dict:
        reg = self.registry
        shadow = reg.get_shadow(model)
        return {
            "model": model,
            "traffic": reg.get_traffic(model),
            "shadow": shadow.model_dump() if shadow else None,
            "rollback_target": reg.rollback_target(model),
            "versions": [
                {"version": v.version, "status": v.status, "kind": v.card.kind, "accuracy": v.card.accuracy}
                for v in reg.list_versions(model)
            ],
            "history": [h.model_dump() for h in reg.history(model, limit=20)],
        }

    async def set_traffic(self, model: str, weights: dict[str, float], reason: str) -> dict:
        """Only versions that are deployed and ready may get traffic."""
        for version, weight in weights.items():
            if weight > 0 and not await self._ready(model, version):
                raise ApiError(409, f"weights: version {version!r} is not deployed and ready; deploy it first")
        return await self._set_traffic(model, weights, reason)

    async def rollback(self, model: str, to_version: str | None, reason: str) -> dict:
        target = to_version or await blocking(self.registry.rollback_target, model)
        if target is None:
            raise ApiError(409, f"model {model!r} has no previous version to roll back to")
        if not await self._ready(model, target):
            raise ApiError(409, f"to_version: version {target!r} is not deployed and ready")
        return await self._set_traffic(model, {target: 100.0}, reason)

    async def _set_traffic(self, model: str, weights: dict[str, float], reason: str) -> dict:
        try:
            rec = await blocking(lambda: self.registry.set_traffic(model, weights, reason=reason, actor="admin-api"))
        except RegistryError as e:
            raise ApiError(422, f"weights: {e}") from None
        await blocking(self._refresh)
        # The audit trail of a switchover: what was live, what is now, and why.
        await blocking(self.registry.record_event, model, "traffic", f"{rec.previous} -> {rec.traffic}: {reason}",
                       {"before": rec.previous, "after": rec.traffic, "actor": "admin-api"})
        return {"model": model, "traffic": rec.traffic, "previous": rec.previous, "id": rec.id}

    async def deploy(self, model: str, version: str, warm: bool, reason: str) -> dict:
        """Keep a version deployed without traffic (or release it); the runner acts within a second."""
        try:
            await blocking(self.registry.set_warm, model, version, warm, reason)
        except RegistryError as e:
            raise ApiError(404, f"version: {e}") from None
        await blocking(self.registry.record_event, model, "deploy_requested" if warm else "release_requested",
                       f"version {version}: {reason}", {"version": version})
        return {"model": model, "version": version, "warm": warm, "ready": await self._ready(model, version)}

    async def prune(self, model: str, keep: int, dry_run: bool) -> dict:
        """Retire old versions: registry rows and folders change on the server, wherever it runs."""
        try:
            return await blocking(lambda: prune_report(self.registry, model, keep, dry_run=dry_run, actor="admin-api"))
        except RegistryError as e:
            raise ApiError(422, f"keep: {e}") from None

    # ---- rollouts --------------------------------------------------------------------------
    def _controller(self) -> RolloutController:
        return RolloutController(self.registry, self.models, TextMetricsSource(self._metrics_text),
                                 notifier=self.notifier, actor="admin-api")

    async def start_rollout(self, model: str, body: StartRequest) -> dict:
        try:
            doc, events = await blocking(start_rollout, self.registry, model, body, time.time())
        except ValidationError as e:
            raise ApiError(422, describe_validation(list(e.errors()), prefix="policy.")) from None
        except (RolloutRefused, RegistryError) as e:
            raise ApiError(409, str(e)) from None
        for event in events:
            self.notifier.notify(event)
        return {"model": model, "rollout_id": doc.rollout_id, "rollout": public(doc)}

    async def rollout_command(self, model: str, command: str) -> dict:
        if command not in COMMANDS:
            raise ApiError(404, f"command: {command!r} is not one of {list(COMMANDS)}")
        try:
            action, doc, events = await blocking(self._controller().command, model, command)
        except NoActiveRollout as e:
            raise ApiError(404, str(e)) from None
        except (RolloutRefused, RegistryError) as e:
            raise ApiError(409, str(e)) from None
        await blocking(self._refresh)  # route by the new table at once, not at the next poll
        return {
            "model": model,
            "rollout_id": doc.rollout_id,
            "action": action.model_dump(),
            "rollout": public(doc),
            "events": [e.model_dump(mode="json") for e in events],
        }

    async def rollout_status(self, model: str) -> dict:
        snapshot = TextMetricsSource(self._metrics_text).scrape(model)
        return await blocking(rollout_status, self.registry, model, snapshot)


def public(doc: RolloutDoc) -> dict[str, Any]:
    return doc.model_dump(mode="json", exclude={"baseline", "baseline_at"})


def version_metrics(snapshot: Snapshot | None) -> dict[str, dict[str, Any]]:
    """Cumulative per-version numbers since the ingress started (live and shadow traffic)."""
    out: dict[str, dict[str, Any]] = {}
    for version, counters in sorted((snapshot.versions if snapshot else {}).items()):
        live, shadow = counters_delta(counters, None), shadow_delta(counters, None)
        out[version] = {
            "requests": live.requests,
            "errors": live.errors,
            "error_rate": live.errors / live.requests if live.requests else None,
            "p99_ms": live.p99_ms,
            "shadow_compared": shadow.compared,
            "shadow_errors": shadow.errors,
            "shadow_agreement": shadow.agreed / shadow.compared if shadow.compared else None,
            "shadow_p99_ms": shadow.p99_ms,
        }
    return out


def rollout_status(registry: Registry, model: str, snapshot: Snapshot | None) -> dict[str, Any]:
    """Traffic, shadow, the active (else the latest) rollout with its events and traffic history."""
    active = registry.load_active_rollout(model)
    doc = RolloutDoc.model_validate_json(active.status_json) if active else None
    rollout_id = doc.rollout_id if doc else next(
        (e.rollout_id for e in registry.events(model, limit=500) if e.rollout_id), None
    )
    events = list(reversed(registry.events(model, rollout_id=rollout_id, limit=1000))) if rollout_id else []
    final = next((e.data.get("status") for e in reversed(events) if e.kind == "rollout.finished"), None)
    since = events[0].ts if events else None
    changes = list(reversed(registry.history(model, limit=500)))
    if since is not None:
        # The change in force when the rollout started, then every change since.
        first = max((i for i, h in enumerate(changes) if h.ts < since), default=0)
        changes = changes[first:]
    shadow = registry.get_shadow(model)
    return {
        "model": model,
        "traffic": registry.get_traffic(model),
        "shadow": shadow.model_dump() if shadow else None,
        "active": doc is not None,
        "rollout_id": rollout_id,
        "rollout": public(doc) if doc else None,
        "final": final,
        "window": {v: s.model_dump() for v, s in doc.last_window.items()} if doc else {},
        "metrics": version_metrics(snapshot),
        "events": [e.model_dump(mode="json") for e in events],
        "history": [h.model_dump(mode="json") for h in changes],
    }
