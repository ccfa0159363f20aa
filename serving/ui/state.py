"""The JSON the operator page polls: every model with its versions, traffic and rollout (pure).

`ui_state(source, now)` reads each model through the injected `UiSource` and shapes it;
`redact` then scrubs anything that looks like a credential, so nothing secret reaches a page
that needs no token to read.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from distilserve.core.card import ModelCard
from serving.registry import EventRecord
from serving.rollout.decide import TERMINAL_PHASES, RolloutStatus
from serving.rollout.policy import RolloutPolicy, parse_policy
from serving.rollout.stats import VersionStats
from serving.ui.gates import gate_rows, steps
from serving.ui.source import ModelReading, UiSource

_COMMANDS = {  # what an operator may send in each phase (the API refuses the rest anyway)
    "pending": ["abort"],
    "progressing": ["promote", "pause", "abort"],
    "paused": ["promote", "resume", "abort"],
}
_SECRET_KEY = re.compile(r"token|secret|password|passwd|authorization|api[_-]?key|credential", re.I)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/\s:@]+(:[^/\s@]*)?@", re.I)


def card_summary(card: ModelCard) -> dict[str, Any]:
    """What an operator compares between versions; never the path or the training config."""
    b1, b32 = card.latency_at(1), card.latency_at(32)
    lin = card.lineage
    return {
        "kind": card.kind,
        "accuracy": card.accuracy,
        "accuracy_std": card.accuracy_std,
        "eval_examples": card.eval_examples,
        "p50_b1_ms": b1.p50_ms if b1 else None,
        "p99_b1_ms": b1.p99_ms if b1 else None,
        "p50_b32_ms": b32.p50_ms if b32 else None,
        "p99_b32_ms": b32.p99_ms if b32 else None,
        "parameters": card.parameters,
        "bytes": card.bytes,
        "dtype": card.dtype,
        "measured_on": card.measured_on,
        "created_at": card.created_at,
        "labels": list(card.labels),
        "lineage": {
            "teacher_version": lin.teacher_version,
            "base_model": lin.base_model,
            "data_fingerprint": lin.data_fingerprint,
            "code_commit": lin.code_commit,
            "code_dirty": lin.code_dirty,
            "weights_sha256": lin.weights_sha256,
            "config_hash": lin.config_hash,
        },
    }


def _event(e: EventRecord) -> dict[str, Any]:
    return {"id": e.id, "ts": e.ts, "kind": e.kind, "message": e.message, "rollout_id": e.rollout_id}


def _past_rollout(events: list[EventRecord]) -> tuple[RolloutPolicy | None, RolloutStatus | None,
                                                     dict[str, VersionStats]]:
    """Policy, last status and last window of a finished rollout, from its own events."""
    policy = status = None
    window: dict[str, VersionStats] = {}
    try:
        for e in events:  # oldest first: later events win
            if e.kind == "rollout.started" and "policy" in e.data:
                policy = parse_policy(e.data["policy"])
            if isinstance(e.data.get("status"), dict):
                status = RolloutStatus.model_validate(e.data["status"])
            if isinstance(e.data.get("window"), dict):
                window = {v: VersionStats.model_validate(s) for v, s in e.data["window"].items()}
    except ValidationError:
        pass  # an event written by another schema: show the log without the numbers
    return policy, status, window


def rollout_view(r: ModelReading) -> dict[str, Any] | None:
    """The active rollout, else the latest finished one, as the page draws it."""
    if r.rollout_id is None:
        return None
    if r.rollout is not None:
        policy, status, window = r.rollout.policy, r.rollout.status, dict(r.rollout.last_window)
    else:
        policy, status, window = _past_rollout(r.events)
    phase = r.final or (status.phase if status else None)
    active = r.rollout is not None and phase not in TERMINAL_PHASES
    return {
        "rollout_id": r.rollout_id,
        "active": active,
        "strategy": status.strategy if status else (policy.strategy if policy else None),
        "phase": phase,
        "stable": status.stable_version if status else None,
        "candidate": status.candidate_version if status else None,
        "step": status.step if status else None,
        "steps": steps(policy, status),
        "traffic": status.traffic if status else {},
        "reason": status.reason if status else "",
        "started_at": status.started_at if status else None,
        "step_started_at": status.step_started_at if status else None,
        "updated_at": status.updated_at if status else None,
        "manual_pause": status.manual_pause if status else False,
        "consecutive_failures": status.consecutive_failures if status else 0,
        "consecutive_inconclusive": status.consecutive_inconclusive if status else 0,
        "policy": policy.model_dump(mode="json") if policy else None,
        "gates": gate_rows(policy, status, window),
        "window": {v: s.model_dump(mode="json") for v, s in sorted(window.items())},
        "decisions": [_event(e) for e in r.events],
        "commands": _COMMANDS.get(phase or "", []) if active else [],
    }


def health(r: ModelReading, rollout: dict[str, Any] | None) -> dict[str, str]:
    """The model's headline: level ok | info | warn | bad and one line of text.

    A rollback or abort stays a warning until someone changes traffic after it (no clock: an
    unacknowledged rollback from hours ago still deserves a look).
    """
    if not any(w > 0 for w in r.traffic.values()):
        return {"level": "bad", "text": "no live version: requests get 503"}
    if rollout and rollout["active"]:
        what = f"{rollout['strategy']} of v{rollout['candidate']} over v{rollout['stable']}"
        if rollout["phase"] == "paused":
            return {"level": "warn", "text": f"rollout paused: {what}"}
        return {"level": "info", "text": f"rollout in progress: {what}"}
    if rollout and rollout["phase"] in ("rolled_back", "aborted") and rollout["decisions"]:
        finished = rollout["decisions"][-1]["ts"]
        if not any(h.ts > finished for h in r.history):
            return {"level": "warn", "text": f"last rollout {rollout['phase'].replace('_', ' ')}: {rollout['reason']}"}
    live = ", ".join(f"v{v} {w:g}%" for v, w in sorted(r.traffic.items()) if w > 0)
    return {"level": "ok", "text": f"stable: {live}"}


def model_state(r: ModelReading) -> dict[str, Any]:
    rollout = rollout_view(r)
    roles = {rollout["stable"]: "stable", rollout["candidate"]: "candidate"} if rollout and rollout["active"] else {}
    versions = [
        {
            "version": v.version,
            "status": v.status,
            "registered_at": v.registered_at,
            "weight": r.traffic.get(v.version, 0.0),
            "live": r.traffic.get(v.version, 0.0) > 0,
            "warm": v.version in r.warm,
            "shadow": r.shadow.share if r.shadow and r.shadow.version == v.version else None,
            "rollback_target": v.version == r.rollback_target,
            "role": roles.get(v.version),
            "card": card_summary(v.card),
        }
        for v in r.versions
    ]
    return {
        "model": r.model,
        "health": health(r, rollout),
        "traffic": dict(sorted(r.traffic.items())),
        "shadow": {"version": r.shadow.version, "share": r.shadow.share} if r.shadow else None,
        "rollback_target": r.rollback_target,
        "versions": versions,
        "history": [
            {"id": h.id, "ts": h.ts, "traffic": h.traffic, "previous": h.previous, "reason": h.reason, "actor": h.actor}
            for h in r.history
        ],
        "rollout": rollout,
        "events": [_event(e) for e in r.recent_events],
    }


def redact(value: Any) -> Any:
    """A copy with credentials in URLs masked and values under secret-sounding keys dropped."""
    if isinstance(value, str):
        return _URL_CREDENTIALS.sub(r"\g<scheme>***@", value)
    if isinstance(value, dict):
        return {k: ("***" if isinstance(k, str) and _SECRET_KEY.search(k) else redact(v)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def ui_state(source: UiSource, now: float) -> dict[str, Any]:
    """The page's whole state (blocking: the router runs it in a thread)."""
    return redact({"generated_at": now, "models": [model_state(source.read(m)) for m in source.models()]})
