"""Admin endpoints of rollouts (bearer token), mounted on the ingress through serving.routers.

POST /admin/models/{m}/rollouts                 start one (body: `StartRequest`)
POST /admin/models/{m}/rollouts/{command}       promote | rollback | pause | resume | abort | promote-winner
GET  /admin/models/{m}/rollouts/status          traffic split, per-version metrics, decision state, events

Commands act at once, through the same decide() and the same transaction as the controller's
ticks; the serve loop's controller then carries on from the stored state.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import APIRouter, Request
from pydantic import ValidationError

from serving.control.metrics_source import Snapshot, TextMetricsSource, counters_delta, shadow_delta
from serving.control.rollout_doc import RolloutDoc
from serving.control.rollout_start import RolloutRefused, StartRequest, start_rollout
from serving.control.rollouts import COMMANDS, NoActiveRollout, RolloutController
from serving.control.webhooks import WebhookNotifier
from serving.errors import ApiError, describe_validation
from serving.registry import Registry, RegistryError

router = APIRouter()
T = TypeVar("T")
_NOTIFIERS: dict[tuple[str, ...], WebhookNotifier] = {}


def _ingress(request: Request, model: str) -> Any:
    ingress = request.app.state.ingress
    ingress._admin(request)
    ingress._known_model(model)
    return ingress


def _controller(ingress: Any) -> RolloutController:
    urls = tuple(getattr(ingress.cfg, "webhooks", ()) or ())
    notifier = _NOTIFIERS.setdefault(urls, WebhookNotifier(urls))
    return RolloutController(
        ingress.view.registry,
        ingress.view.models,
        TextMetricsSource(ingress.metrics.render),
        notifier=notifier,
        actor="admin-api",
    )


async def _blocking(fn: Callable[..., T], *args: Any) -> T:
    # SQLite writes wait for the lock (busy_timeout): never on the event loop.
    return await asyncio.get_running_loop().run_in_executor(None, functools.partial(fn, *args))


def _public(doc: RolloutDoc) -> dict[str, Any]:
    return doc.model_dump(mode="json", exclude={"baseline", "baseline_at"})


@router.post("/admin/models/{model}/rollouts")
async def start(model: str, request: Request) -> dict:
    ingress = _ingress(request, model)
    try:
        body = StartRequest.model_validate_json(await ingress._body(request))
    except ValidationError as e:
        raise ApiError(422, describe_validation(list(e.errors()))) from None
    registry: Registry = ingress.view.registry
    try:
        doc, events = await _blocking(start_rollout, registry, model, body, time.time())
    except ValidationError as e:
        raise ApiError(422, describe_validation(list(e.errors()), prefix="policy.")) from None
    except (RolloutRefused, RegistryError) as e:
        raise ApiError(409, str(e)) from None
    notifier = _controller(ingress).notifier
    for event in events:
        notifier.notify(event)
    return {"model": model, "rollout_id": doc.rollout_id, "rollout": _public(doc)}


@router.post("/admin/models/{model}/rollouts/{command}")
async def command(model: str, command: str, request: Request) -> dict:
    ingress = _ingress(request, model)
    if command not in COMMANDS:
        raise ApiError(404, f"command: {command!r} is not one of {list(COMMANDS)}")
    try:
        action, doc, events = await _blocking(_controller(ingress).command, model, command)
    except NoActiveRollout as e:
        raise ApiError(404, str(e)) from None
    except (RolloutRefused, RegistryError) as e:
        raise ApiError(409, str(e)) from None
    ingress.view.refresh()  # route by the new table at once, not at the next poll
    return {
        "model": model,
        "rollout_id": doc.rollout_id,
        "action": action.model_dump(),
        "rollout": _public(doc),
        "events": [e.model_dump(mode="json") for e in events],
    }


@router.get("/admin/models/{model}/rollouts/status")
async def status(model: str, request: Request) -> dict:
    ingress = _ingress(request, model)
    snapshot = TextMetricsSource(ingress.metrics.render).scrape(model)
    return await _blocking(rollout_status, ingress.view.registry, model, snapshot)


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
        "rollout": _public(doc) if doc else None,
        "final": final,
        "window": {v: s.model_dump() for v, s in doc.last_window.items()} if doc else {},
        "metrics": version_metrics(snapshot),
        "events": [e.model_dump(mode="json") for e in events],
        "history": [h.model_dump(mode="json") for h in changes],
    }
