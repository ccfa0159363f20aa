"""The I/O around decide(): read metrics, run smoke checks, decide, apply, record, notify.

Per tick and model with an active rollout: load the stored document, measure the window
[status.window_started_at, now] (Prometheus counters minus the baseline stored with the window,
plus feedback labels/outcomes from the registry), call `decide`, then apply the action and save
the new status, the new baseline and the events in ONE registry transaction. Webhooks are told
afterwards, in the background. All state is in the registry, so a restarted controller resumes
where the last one stopped; a document changed by someone else meanwhile (an operator command)
wins, and this tick's result is dropped.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import httpx

from distilserve.core.tensors import INPUT_TEXT, OUTPUT_LABEL, OUTPUT_PROBABILITIES
from serving.control.metrics_source import HttpMetricsSource, Snapshot, window_latency, window_stats
from serving.control.rollout_doc import RolloutDoc
from serving.control.rollout_start import RolloutRefused, save_new
from serving.control.webhooks import WebhookNotifier
from serving.registry import EventRecord, FeedbackStats, Registry
from serving.rollout.decide import TERMINAL_PHASES, Action, Command, MetricsWindow, RolloutStatus, decide
from serving.rollout.policy import ABPolicy, BlueGreenPolicy, ShadowPolicy
from serving.rollout.stats import VersionStats

log = logging.getLogger("distilserve.rollout")

COMMANDS = ("promote", "rollback", "pause", "resume", "abort", "promote-winner")
_WATCHED = ("phase", "step", "consecutive_failures", "consecutive_inconclusive", "manual_pause")


class NoActiveRollout(LookupError):
    """The model has no active rollout (HTTP 404)."""


class MetricsSource(Protocol):
    def scrape(self, model: str) -> Snapshot | None: ...


FeedbackFn = Callable[[str, str, float], FeedbackStats]


def _with_feedback(stats: VersionStats, labelled: int, correct: int, trials: int, conversions: int) -> VersionStats:
    # Feedback can be overridden later (a label corrected), so deltas are clamped into range.
    labelled, trials = max(labelled, 0), max(trials, 0)
    return stats.model_copy(
        update={
            "labelled": labelled,
            "correct": min(max(correct, 0), labelled),
            "trials": trials,
            "conversions": min(max(conversions, 0), trials),
        }
    )


def build_window(
    doc: RolloutDoc,
    snapshot: Snapshot | None,
    feedback: FeedbackFn,
    *,
    smoke_ok: bool | None = None,
    command: Command | None = None,
) -> MetricsWindow:
    """The MetricsWindow for [status.window_started_at, now].

    Requests, errors and p99 come from `snapshot` minus the baseline stored when the window
    started, with the window's latency histogram for decide() to sum; without either (a failed
    scrape) the window has no version stats at all, which decide() reads as no metrics. Feedback
    is the cumulative count since the evidence began (A/B: `started_at`; a canary step:
    `evidence_started_at`) minus what the status already holds (`totals` / `evidence`), so labels
    arriving after their prediction's window are still counted, exactly once.
    """
    status = doc.status
    if command is not None or status.phase == "pending":
        return MetricsWindow(command=command, smoke_ok=smoke_ok)
    versions = [status.stable_version, status.candidate_version]
    measurable = snapshot is not None and doc.baseline is not None and doc.baseline_at == status.window_started_at
    cumulative = isinstance(doc.policy, ABPolicy)
    if not measurable and not cumulative:
        return MetricsWindow(smoke_ok=smoke_ok)
    shadow = status.candidate_version if isinstance(doc.policy, ShadowPolicy) else None
    if measurable:
        assert snapshot is not None and doc.baseline is not None
        stats = window_stats(snapshot, doc.baseline, versions, shadow=shadow)
        buckets = window_latency(snapshot, doc.baseline, versions) if shadow is None else {}
    else:
        stats, buckets = {v: VersionStats() for v in versions}, {}
    if shadow is not None:
        return MetricsWindow(versions=stats, smoke_ok=smoke_ok)
    out = {}
    for v, s in stats.items():
        if cumulative:
            since, seen = status.started_at or 0.0, status.totals.get(v, VersionStats())
        else:  # a canary step's evidence, or (no evidence) just this window
            since = status.evidence_started_at or status.window_started_at or 0.0
            seen = status.evidence.get(v, VersionStats())
        fb = feedback(doc.model, v, since)
        out[v] = _with_feedback(
            s,
            fb.labelled - seen.labelled,
            fb.correct - seen.correct,
            fb.outcome_trials - seen.trials,
            fb.outcome_successes - seen.conversions,
        )
    return MetricsWindow(versions=out, smoke_ok=smoke_ok, latency_buckets=buckets)


def _event_data(doc: RolloutDoc, action: Action, status: RolloutStatus, window: MetricsWindow) -> dict[str, Any]:
    data: dict[str, Any] = {
        "strategy": status.strategy,
        "action": action.kind,
        "phase": status.phase,
        "step": status.step,
        "traffic": status.traffic,
        "stable": status.stable_version,
        "candidate": status.candidate_version,
    }
    if window.versions:
        data["window"] = {v: s.model_dump() for v, s in window.versions.items()}
    if window.command:
        data["command"] = window.command
    if status.ab is not None:
        data["ab"] = status.ab.model_dump()
    return data


def _clean(value: Any) -> Any:
    """JSON-safe copy: NaN/inf (never expected, but event data refuses them) become None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


class RolloutController:
    """Runs every active rollout one step per `tick()`.

    Args:
        registry: the registry (its connection is used from the calling thread only).
        models: models to look at.
        source: where counters come from (`HttpMetricsSource` of the ingress, or in-process).
        ingress_url: base URL of the ingress for readiness and smoke checks; None skips them
            (a blue-green then waits for its smoke timeout, a pending rollout never starts).
        notifier: webhook notifier; None sends nothing.
        clock: seconds since the epoch (tests pass a fake; the same clock as predictions' ts).
        actor: written as the actor of traffic changes.
        ready_check, smoke: replace the HTTP readiness / smoke checks (tests, other transports).
    """

    def __init__(
        self,
        registry: Registry,
        models: Sequence[str],
        source: MetricsSource,
        *,
        ingress_url: str | None = None,
        notifier: WebhookNotifier | None = None,
        clock: Callable[[], float] = time.time,
        http_timeout_s: float = 5.0,
        actor: str = "rollout-controller",
        ready_check: Callable[[str, str], bool] | None = None,
        smoke: Callable[[str, str, Sequence[str]], tuple[bool | None, str]] | None = None,
    ) -> None:
        self.registry = registry
        self.models = list(models)
        self.source = source
        self.ingress_url = ingress_url.rstrip("/") if ingress_url else None
        self.notifier = notifier or WebhookNotifier([])
        self.clock = clock
        self.http_timeout_s = http_timeout_s
        self.actor = actor
        self._ready = ready_check or self._ready_http
        self._smoke = smoke or self.smoke_check

    @classmethod
    def for_config(cls, cfg: Any, registry: Registry) -> RolloutController:
        """The controller `distilserve serve` runs: scrapes its own ingress on loopback."""
        host = "127.0.0.1" if cfg.host in ("0.0.0.0", "::", "") else cfg.host
        base = f"http://{host}:{cfg.port}"
        return cls(
            registry,
            cfg.models,
            HttpMetricsSource(f"{base}/metrics"),
            ingress_url=base,
            notifier=WebhookNotifier(cfg.webhooks),
        )

    # ---- the loop --------------------------------------------------------------------------

    def tick(self) -> list[EventRecord]:
        """One step of every active rollout; a failing model is logged and the others go on."""
        events: list[EventRecord] = []
        for model in self.models:
            try:
                events += self.tick_model(model)
            except Exception:  # noqa: BLE001 - one broken rollout must not stop the others or the server
                log.exception("rollout tick of model %s failed", model)
        return events

    def tick_model(self, model: str) -> list[EventRecord]:
        active = self.registry.load_active_rollout(model)
        if active is None:
            return []
        doc = RolloutDoc.model_validate_json(active.status_json)
        status = doc.status
        if status.phase == "pending" and not self._ready(model, status.candidate_version):
            waited = self.clock() - doc.created_at
            if waited < doc.ready_timeout_s:
                return []
            reason = f"candidate {status.candidate_version} not ready within {doc.ready_timeout_s:.0f} s; aborted"
            return self._run(model, doc, self.source.scrape(model), command="abort", reason=reason)
        smoke: tuple[bool | None, str] = (None, "")
        if (
            isinstance(doc.policy, BlueGreenPolicy)
            and status.phase == "progressing"
            and status.step == 0
            and not status.manual_pause
        ):
            smoke = self._smoke(model, status.candidate_version, doc.smoke_inputs)
        return self._run(model, doc, self.source.scrape(model), smoke=smoke)

    def command(self, model: str, command: str) -> tuple[Action, RolloutDoc, list[EventRecord]]:
        """Apply an operator command now. 'promote-winner' (A/B only) reads the test at once and
        promotes only a significant winner.

        Raises:
            NoActiveRollout: nothing to command.
            RolloutRefused: the command does not fit the rollout (e.g. no A/B winner yet).
            ValueError: unknown command.
        """
        if command not in COMMANDS:
            raise ValueError(f"command must be one of {COMMANDS}, got {command!r}")
        snapshot = self.source.scrape(model)
        with self.registry.transaction():
            active = self.registry.load_active_rollout(model)
            if active is None:
                raise NoActiveRollout(f"model {model!r} has no active rollout")
            doc = RolloutDoc.model_validate_json(active.status_json)
            if command == "promote-winner":
                if not isinstance(doc.policy, ABPolicy):
                    raise RolloutRefused(
                        f"promote-winner is for A/B tests; rollout {doc.rollout_id} is {doc.policy.strategy}"
                    )
                window = build_window(doc, snapshot, self._feedback)
                action, status = decide(doc.policy, doc.status, window, self.clock())
                if action.kind != "promote_winner":
                    raise RolloutRefused(f"no significant winner yet: {action.reason}")
                events = self._commit(model, doc, action, status, window, snapshot, {})
            else:
                action, status, events = self._decide_and_commit(
                    model, doc, snapshot, command=command  # type: ignore[arg-type]
                )
        self._notify(events)
        return action, doc.model_copy(update={"status": status, "rev": doc.rev + 1}), events

    # ---- internals -------------------------------------------------------------------------

    def _run(
        self,
        model: str,
        doc: RolloutDoc,
        snapshot: Snapshot | None,
        *,
        command: Command | None = None,
        reason: str | None = None,
        smoke: tuple[bool | None, str] = (None, ""),
    ) -> list[EventRecord]:
        with self.registry.transaction():
            current = self.registry.load_active_rollout(model)
            if current is None or current.rollout_id != doc.rollout_id:
                return []  # finished or replaced meanwhile
            if RolloutDoc.model_validate_json(current.status_json).rev != doc.rev:
                return []  # an operator command got in first; the next tick starts from it
            _, _, events = self._decide_and_commit(
                model, doc, snapshot, command=command, reason=reason, smoke=smoke
            )
        self._notify(events)
        return events

    def _decide_and_commit(
        self,
        model: str,
        doc: RolloutDoc,
        snapshot: Snapshot | None,
        *,
        command: Command | None = None,
        reason: str | None = None,
        smoke: tuple[bool | None, str] = (None, ""),
    ) -> tuple[Action, RolloutStatus, list[EventRecord]]:
        window = build_window(doc, snapshot, self._feedback, smoke_ok=smoke[0], command=command)
        action, status = decide(doc.policy, doc.status, window, self.clock())
        if reason is not None:  # the controller, not an operator, issued this command
            action = action.model_copy(update={"reason": reason})
            status = status.model_copy(update={"reason": reason})
        extra = {"smoke": smoke[1]} if smoke[1] else {}
        return action, status, self._commit(model, doc, action, status, window, snapshot, extra)

    def _feedback(self, model: str, version: str, since: float) -> FeedbackStats:
        return self.registry.feedback_stats(model, version, since)

    def _commit(
        self,
        model: str,
        doc: RolloutDoc,
        action: Action,
        status: RolloutStatus,
        window: MetricsWindow,
        snapshot: Snapshot | None,
        extra: dict[str, Any],
    ) -> list[EventRecord]:
        """Apply `action`, save the status and record events; the caller holds the transaction."""
        reg, rid = self.registry, doc.rollout_id
        before = doc.status
        self._apply(model, doc, action, before, status)
        new_window = status.window_started_at != before.window_started_at or doc.baseline_at != status.window_started_at
        updated = doc.model_copy(
            update={
                "status": status,
                "rev": doc.rev + 1,
                "baseline": snapshot if new_window else doc.baseline,
                "baseline_at": status.window_started_at if new_window else doc.baseline_at,
                "last_window": dict(window.versions) if window.versions else doc.last_window,
            }
        )
        reg.save_rollout(model, rid, doc.policy.strategy, updated.model_dump_json())
        events = []
        changed = any(getattr(before, f) != getattr(status, f) for f in _WATCHED)
        if action.kind != "hold" or changed or window.command is not None:
            data = _clean({**_event_data(doc, action, status, window), **extra})
            events.append(reg.record_event(model, f"rollout.{action.kind}", action.reason, data, rollout_id=rid))
        if status.phase in TERMINAL_PHASES:
            reg.finish_rollout(model, rid, status.phase)
            data = _clean({"phase": status.phase, "status": status.model_dump(mode="json")})
            events.append(
                reg.record_event(model, "rollout.finished", f"{status.phase}: {status.reason}", data, rollout_id=rid)
            )
            events += self._then(model, doc, action, status)
        return events

    def _apply(
        self, model: str, doc: RolloutDoc, action: Action, before: RolloutStatus, status: RolloutStatus
    ) -> None:
        reg = self.registry
        stable, cand = status.stable_version, status.candidate_version
        if action.traffic is not None and not _same(reg.get_traffic(model), action.traffic):
            reg.set_traffic(model, action.traffic, f"rollout {doc.rollout_id}: {action.reason}", actor=self.actor)
        if isinstance(doc.policy, ShadowPolicy) and before.phase == "pending" and status.phase == "progressing":
            reg.set_shadow(model, cand, doc.policy.sample_percent)
        if isinstance(doc.policy, BlueGreenPolicy) and status.step == 1 and before.step == 0:
            # The old colour stays deployed for the rollback window; scale_down releases it.
            reg.set_warm(model, stable, True, reason=f"rollout {doc.rollout_id}: old colour")
        if status.phase in TERMINAL_PHASES:
            shadow = reg.get_shadow(model)
            if shadow is not None and shadow.version == cand:
                reg.set_shadow(model, None)
            keep_cand = isinstance(doc.policy, ShadowPolicy) and status.phase == "promoted" and doc.then_canary
            for v in (stable, cand):
                if not (keep_cand and v == cand):
                    reg.set_warm(model, v, False)

    def _then(self, model: str, doc: RolloutDoc, action: Action, status: RolloutStatus) -> list[EventRecord]:
        """A shadow found 'ready to canary' starts its canary, if one was asked for."""
        if not (isinstance(doc.policy, ShadowPolicy) and status.phase == "promoted" and doc.then_canary):
            return []
        from serving.rollout.decide import start_status

        policy = doc.then_canary
        follow = RolloutDoc(
            rollout_id=f"{doc.rollout_id}-canary",
            model=model,
            policy=policy,
            status=start_status(policy, status.stable_version, status.candidate_version),
            created_at=self.clock(),
            ready_timeout_s=doc.ready_timeout_s,
        )
        return save_new(self.registry, follow)

    def _notify(self, events: list[EventRecord]) -> None:
        for event in events:
            self.notifier.notify(event)

    # ---- readiness and smoke checks (HTTP to the ingress) ------------------------------------

    def _ready_http(self, model: str, version: str) -> bool:
        if self.ingress_url is None:
            return False
        try:
            r = httpx.get(
                f"{self.ingress_url}/v2/models/{model}/versions/{version}/ready", timeout=self.http_timeout_s
            )
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    def smoke_check(self, model: str, version: str, texts: Sequence[str]) -> tuple[bool | None, str]:
        """Send `texts` to the pinned-version endpoint; (True|False, detail), or (None, why) when the
        version could not be asked (not reachable, 503): then the smoke result is simply not in yet.
        """
        if self.ingress_url is None:
            return None, "no ingress URL"
        body = {"inputs": [{"name": INPUT_TEXT, "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}]}
        url = f"{self.ingress_url}/v2/models/{model}/versions/{version}/infer"
        try:
            r = httpx.post(url, json=body, timeout=self.http_timeout_s)
        except httpx.HTTPError as e:
            return None, f"smoke request failed: {e}"
        if r.status_code == 503:
            return None, f"version {version} not ready (503)"
        if r.status_code != 200:
            return False, f"smoke request -> {r.status_code}: {r.text[:300]}"
        record = self.registry.get_version(model, version)
        labels = set(record.card.labels) if record else set()
        return check_smoke_response(r.json(), len(texts), labels)


def check_smoke_response(body: dict[str, Any], n: int, labels: set[str]) -> tuple[bool, str]:
    """A well-formed answer: n labels from the card's label set, n probability rows summing to 1."""
    try:
        outputs = {o["name"]: o for o in body["outputs"]}
        got = list(outputs[OUTPUT_LABEL]["data"])
        probs = [float(x) for x in outputs[OUTPUT_PROBABILITIES]["data"]]
        rows, width = outputs[OUTPUT_PROBABILITIES]["shape"]
    except (KeyError, TypeError, ValueError) as e:
        return False, f"malformed smoke response: {e!r}"
    if len(got) != n or rows != n or len(probs) != n * width:
        return False, f"smoke response has {len(got)} labels / {rows} rows for {n} inputs"
    if labels and not set(got) <= labels:
        return False, f"smoke labels {sorted(set(got) - labels)} not in the card's {sorted(labels)}"
    for i in range(n):
        row = probs[i * width : (i + 1) * width]
        if not all(math.isfinite(p) and p >= 0 for p in row) or abs(sum(row) - 1.0) > 1e-3:
            return False, f"smoke probabilities of input {i} are not a distribution: {row}"
    return True, f"smoke passed: {n} inputs answered, labels {got}"


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    from serving.registry.traffic import same_traffic

    return same_traffic(a, b)
