"""`decide(policy, status, window, now) -> (action, status)`: every rollout rule, and nothing else.

Pure: no clock, no I/O, no randomness; the answer depends only on the arguments. The controller
around it deploys the candidate at 0 % before the first call, then loops: read the metrics of
[status.window_started_at, now] into a `MetricsWindow`, call `decide`, carry out the `Action`,
store the returned `RolloutStatus` as JSON in the registry. A restarted controller reloads the
status and carries on: nothing lives outside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.rollout.policy import ABPolicy, BlueGreenPolicy, CanaryPolicy, RolloutPolicy, ShadowPolicy
from serving.rollout.stats import (
    ABResult,
    GateVerdict,
    VersionStats,
    evaluate_gates,
    finite,
    histogram_quantile,
    msprt_test,
)

Phase = Literal["pending", "progressing", "paused", "promoted", "rolled_back", "aborted"]
TERMINAL_PHASES: frozenset[str] = frozenset({"promoted", "rolled_back", "aborted"})
Command = Literal["promote", "rollback", "pause", "resume", "abort"]
ActionKind = Literal[
    "hold", "set_traffic", "promote", "promote_winner", "rollback", "pause", "scale_down", "none"
]
Strategy = Literal["canary", "blue_green", "ab", "shadow"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MetricsWindow(_Frozen):
    """What the controller observed over [status.window_started_at, now], plus operator input."""

    versions: dict[str, VersionStats] = Field(
        default_factory=dict, description="Stats per version; a version left out has no data."
    )
    smoke_ok: bool | None = Field(
        default=None, description="Blue-green smoke result; None while not reported."
    )
    command: Command | None = Field(default=None, description="Operator command; it takes effect at once.")
    latency_buckets: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description=(
            "Per version, the window's latency histogram as Prometheus cumulative bucket counts "
            "{le in seconds: count}, '+Inf' included. Optional: with it a canary step's p99 is read "
            "off the summed histogram of all its windows; without it, the worst window p99 stands."
        ),
    )

    @field_validator("latency_buckets")
    @classmethod
    def _buckets_are_counts(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for version, buckets in value.items():
            for le, count in buckets.items():
                try:
                    float(le)
                except ValueError:
                    raise ValueError(
                        f"latency_buckets[{version!r}]: bucket bound {le!r} is not a number (e.g. '0.05' or '+Inf')"
                    ) from None
                if not (math.isfinite(count) and count >= 0):
                    raise ValueError(f"latency_buckets[{version!r}][{le!r}]: count {count} must be finite and >= 0")
        return value


class Action(_Frozen):
    """What the controller must do now.

    kinds: hold (keep everything, wait), set_traffic (apply `traffic`), promote (`version` becomes
    stable; apply `traffic` when given, retire the other version; for shadow: start a canary),
    promote_winner (A/B: `version` won; apply `traffic`), rollback (apply `traffic`, retire
    `version`), pause (freeze traffic), scale_down (retire `version`, the old colour), none
    (the rollout is over).
    """

    kind: ActionKind
    traffic: dict[str, float] | None = Field(
        default=None, description="{version: percent}; None = unchanged."
    )
    version: str | None = Field(default=None, description="The version promoted, or the one to retire.")
    reason: str = Field(description="Why, with the numbers behind it; recorded as an event.")


class RolloutStatus(_Frozen):
    """Everything a rollout remembers between calls; stored in the registry as JSON."""

    strategy: Strategy
    phase: Phase = "pending"
    stable_version: str = Field(min_length=1)
    candidate_version: str = Field(min_length=1)
    step: int = Field(
        default=0, ge=0, description="Canary: index into step_weights. Blue-green: 0 smoke, 1 switched."
    )
    traffic: dict[str, float] = Field(description="Traffic table in force, {version: percent}.")
    started_at: float | None = Field(default=None, description="When the first decide() started the rollout.")
    step_started_at: float | None = Field(default=None, description="When the current step or stage began.")
    window_started_at: float | None = Field(
        default=None, description="Start of the window the next call judges."
    )
    updated_at: float | None = None
    consecutive_inconclusive: int = Field(default=0, ge=0, description="Canary: judgements in a row without a verdict.")
    consecutive_failures: int = Field(default=0, ge=0)
    consecutive_no_data: int = Field(
        default=0, ge=0, description="Canary: windows in a row with no metrics at all (see max_inconclusive)."
    )
    manual_pause: bool = Field(default=False, description="Paused by an operator (only 'resume' continues).")
    totals: dict[str, VersionStats] = Field(
        default_factory=dict, description="A/B and shadow: sums since start."
    )
    evidence: dict[str, VersionStats] = Field(
        default_factory=dict,
        description=(
            "Canary: the current step's judged windows summed since evidence_started_at (counts and "
            "labels add; p99 per `accumulate`). Emptied when the step changes, a gate fails, or the "
            "p99 is unknown."
        ),
    )
    evidence_buckets: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Canary: per version, the summed latency histogram of the evidence, while every window carried one.",
    )
    evidence_started_at: float | None = Field(
        default=None, description="Canary: when the evidence began (feedback counts from here)."
    )
    ab: ABResult | None = Field(
        default=None, description="A/B: latest reading; its p_value is the running minimum."
    )
    reason: str = ""

    @model_validator(mode="after")
    def _two_versions(self) -> RolloutStatus:
        if self.stable_version == self.candidate_version:
            raise ValueError(
                f"candidate_version ({self.candidate_version!r}) must differ from stable_version "
                f"({self.stable_version!r})"
            )
        return self


Decision = tuple[Action, RolloutStatus]


def start_status(policy: RolloutPolicy, stable_version: str, candidate_version: str) -> RolloutStatus:
    """A pending rollout: all traffic on stable; the first decide() starts it."""
    return RolloutStatus(
        strategy=policy.strategy,
        stable_version=stable_version,
        candidate_version=candidate_version,
        traffic={stable_version: 100.0, candidate_version: 0.0},
        reason="pending",
    )


def next_step_weight(steps: Sequence[float], current: float) -> float | None:
    """The first step weight above `current`, or None when `current` is already at or past the last."""
    return next((w for w in steps if w > current), None)


def decide(policy: RolloutPolicy, status: RolloutStatus, window: MetricsWindow, now: float) -> Decision:
    """The next action and the status to store. Terminal phases stay terminal; commands act at once.

    Raises:
        ValueError: the status belongs to another strategy, or `now` is not finite.
    """
    if status.strategy != policy.strategy:
        raise ValueError(
            f"status.strategy ({status.strategy!r}) does not match policy.strategy ({policy.strategy!r})"
        )
    if not math.isfinite(now):
        raise ValueError(f"now must be finite seconds, got {now!r}")
    if status.phase in TERMINAL_PHASES:
        return Action(kind="none", reason=f"rollout already {status.phase}: {status.reason}"), status
    if window.command is not None:
        return _command(policy, status, window.command, now)
    if status.manual_pause:
        return _hold(status, now, "paused by operator; send 'resume' to continue")
    match policy:
        case CanaryPolicy():
            return _canary(policy, status, window, now)
        case BlueGreenPolicy():
            return _blue_green(policy, status, window, now)
        case ABPolicy():
            return _ab(policy, status, window, now)
        case ShadowPolicy():
            return _shadow(policy, status, window, now)
    raise AssertionError(f"unhandled policy {policy!r}")  # pragma: no cover - the union is exhaustive


# -- shared moves ---------------------------------------------------------------------------------


def _to(status: RolloutStatus, now: float, action: Action, **changes: object) -> Decision:
    return action, status.model_copy(update={**changes, "reason": action.reason, "updated_at": now})


def _hold(status: RolloutStatus, now: float, reason: str) -> Decision:
    # A status written without a window start gets one now, so its first window can ever end.
    start = now if status.window_started_at is None else status.window_started_at
    return _to(status, now, Action(kind="hold", reason=reason), window_started_at=start)


def _split(status: RolloutStatus, candidate_percent: float) -> dict[str, float]:
    return {status.stable_version: 100.0 - candidate_percent, status.candidate_version: candidate_percent}


def _elapsed(since: float | None, now: float) -> float:
    return 0.0 if since is None else now - since


def _begin(status: RolloutStatus, now: float, action: Action, **changes: object) -> Decision:
    return _to(
        status,
        now,
        action,
        phase="progressing",
        started_at=now,
        step_started_at=now,
        window_started_at=now,
        **changes,
    )


def _rollback(
    status: RolloutStatus, now: float, reason: str, phase: Phase = "rolled_back", **changes: object
) -> Decision:
    action = Action(
        kind="rollback", traffic=_split(status, 0.0), version=status.candidate_version, reason=reason
    )
    return _to(status, now, action, phase=phase, traffic=action.traffic, **changes)


def _promote(status: RolloutStatus, now: float, reason: str) -> Decision:
    action = Action(
        kind="promote", traffic=_split(status, 100.0), version=status.candidate_version, reason=reason
    )
    return _to(status, now, action, phase="promoted", traffic=action.traffic)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def _timed_out(status: RolloutStatus, limit_s: float | None, now: float) -> bool:
    return limit_s is not None and _elapsed(status.started_at, now) >= limit_s


def _command(policy: RolloutPolicy, status: RolloutStatus, command: Command, now: float) -> Decision:
    if command == "rollback":
        return _rollback(status, now, "rollback by operator")
    if command == "abort":
        return _rollback(status, now, "aborted by operator", phase="aborted")
    if command == "pause":
        return _to(
            status, now, Action(kind="pause", reason="paused by operator"), phase="paused", manual_pause=True
        )
    if command == "resume":
        if status.phase != "paused":
            return _hold(status, now, f"resume ignored: rollout is {status.phase}, not paused")
        # Traffic seen while paused is not judged, and the stage clocks (smoke timeout, rollback
        # window) restart: the operator paused to look, and gets the full time after looking.
        return _to(
            status,
            now,
            Action(kind="hold", reason="resumed by operator"),
            manual_pause=False,
            phase="pending" if status.started_at is None else "progressing",
            window_started_at=now,
            step_started_at=now,
            **_fresh_evidence(now),
        )
    if isinstance(policy, BlueGreenPolicy):
        if status.step == 0:
            return _switch(status, now, "switched by operator")
        return _scale_down_old(status, now, "promoted by operator before the rollback window ended")
    if isinstance(policy, ShadowPolicy):
        action = Action(kind="promote", version=status.candidate_version, reason="ready to canary (operator)")
        return _to(status, now, action, phase="promoted")
    return _promote(status, now, "promoted by operator")


# -- canary ---------------------------------------------------------------------------------------
#
# The windows of one step add up. Each judged window is added to `status.evidence` and the gates
# judge the sum, so a thin 1% canary waits for min_requests instead of failing thin windows.
# Inconclusive extends the step (paused, traffic frozen) up to policy.max_step_s; only a failed
# gate or that deadline rolls back, plus max_inconclusive windows in a row with no metrics at all.
#
# Latency does not add like counts: percentiles of parts do not give the percentile of the whole.
# When windows carry their histograms (`MetricsWindow.latency_buckets`, which the controller fills
# from Prometheus bucket deltas) the buckets are summed and p99 is read off the sum, exactly what
# Prometheus' histogram_quantile(0.99, sum(increase(...[step]))) would say. Without histograms the
# step keeps its worst window p99: an upper bound on the p99 of the union (each window has at most
# 1% of its requests above its own p99, so the union has at most 1% above the largest), which errs
# against the candidate on the absolute gate. A window with requests but no p99 makes the evidence's
# p99 unknown: that judgement is inconclusive and the evidence starts afresh, so missing or NaN
# latency can never be averaged away into a promotion.


def _fresh_evidence(now: float) -> dict[str, object]:
    return {"evidence": {}, "evidence_buckets": {}, "evidence_started_at": now}


def accumulate(
    before: VersionStats | None,
    before_buckets: dict[str, float] | None,
    window: VersionStats,
    window_buckets: dict[str, float] | None,
) -> tuple[VersionStats, dict[str, float] | None]:
    """One version's evidence plus one window: (stats, summed histogram or None once one is missing)."""
    before = before or VersionStats()
    summed = before.plus(window)
    if window.requests == 0:  # nothing observed: the latency evidence is unchanged
        return summed.model_copy(update={"p99_ms": before.p99_ms}), before_buckets
    all_have_buckets = before.requests == 0 or before_buckets is not None
    if window_buckets and window_buckets.get("+Inf", 0.0) > 0 and all_have_buckets:
        buckets = dict(before_buckets or {})
        for le, count in window_buckets.items():
            buckets[le] = buckets.get(le, 0.0) + count
        p99_s = histogram_quantile(0.99, buckets)
        return summed.model_copy(update={"p99_ms": None if p99_s is None else p99_s * 1000.0}), buckets
    window_p99 = finite(window.p99_ms)
    if before.requests == 0:
        return summed.model_copy(update={"p99_ms": window_p99}), None
    earlier_p99 = finite(before.p99_ms)
    worst = None if window_p99 is None or earlier_p99 is None else max(window_p99, earlier_p99)
    return summed.model_copy(update={"p99_ms": worst}), None


def _early_error_failure(policy: CanaryPolicy, stable: VersionStats, candidate: VersionStats) -> GateVerdict | None:
    """Fail before min_requests when the candidate already has more errors than a whole sample of
    min_requests may hold at stable's error rate: that sample fails whatever its other requests do."""
    gates = policy.gates
    if candidate.requests >= gates.min_requests or stable.requests < gates.min_requests:
        return None
    stable_rate = stable.errors / stable.requests
    allowed = (stable_rate + gates.max_error_rate_increase) * gates.min_requests
    if candidate.errors <= allowed + 1e-9:
        return None
    return GateVerdict(
        "fail",
        (
            f"error rate: {candidate.errors} errors in {candidate.requests} candidate requests already exceed the "
            f"{allowed:.2f} a sample of {gates.min_requests} may hold at stable's {stable_rate:.4f} "
            f"+ {gates.max_error_rate_increase}",
        ),
    )


def _judge(
    policy: CanaryPolicy, status: RolloutStatus, window: MetricsWindow, now: float
) -> tuple[GateVerdict, dict[str, object]]:
    """The verdict on the step's evidence plus this window, and the status fields that record it."""
    versions = (status.stable_version, status.candidate_version)
    missing = [name for name, v in zip(("stable", "candidate"), versions, strict=True) if v not in window.versions]
    if missing:  # a blind window adds nothing and counts toward max_inconclusive
        verdict = GateVerdict("inconclusive", (f"no metrics for {' and '.join(missing)}",))
        return verdict, {"consecutive_no_data": status.consecutive_no_data + 1}
    evidence, buckets = dict(status.evidence), dict(status.evidence_buckets)
    for v in versions:
        evidence[v], summed = accumulate(
            status.evidence.get(v), status.evidence_buckets.get(v), window.versions[v], window.latency_buckets.get(v)
        )
        buckets.pop(v, None)
        if summed is not None:
            buckets[v] = summed
    stable, candidate = evidence[versions[0]], evidence[versions[1]]
    verdict = _early_error_failure(policy, stable, candidate) or evaluate_gates(policy.gates, stable, candidate)
    judged: dict[str, object] = {"evidence": evidence, "evidence_buckets": buckets, "consecutive_no_data": 0}
    if verdict.outcome == "inconclusive" and _latency_unknown(evidence):
        judged.update(_fresh_evidence(now))  # unknown p99: start again rather than carry the gap
    return verdict, judged


def _latency_unknown(evidence: dict[str, VersionStats]) -> bool:
    return any(s.requests > 0 and finite(s.p99_ms) is None for s in evidence.values())


def _canary(policy: CanaryPolicy, status: RolloutStatus, window: MetricsWindow, now: float) -> Decision:
    steps = policy.step_weights
    if status.phase == "pending":
        traffic = _split(status, steps[0])
        reason = f"canary step 1/{len(steps)}: {steps[0]}% to {status.candidate_version}"
        return _begin(
            status,
            now,
            Action(kind="set_traffic", traffic=traffic, reason=reason),
            step=0,
            traffic=traffic,
            **_fresh_evidence(now),
        )
    elapsed = _elapsed(status.window_started_at, now)
    if elapsed < policy.step_interval_s:
        return _hold(status, now, f"analysis window {elapsed:.0f}/{policy.step_interval_s:.0f} s")

    verdict, judged = _judge(policy, status, window, now)
    details = "; ".join(verdict.reasons)
    current = status.traffic.get(status.candidate_version, 0.0)
    step_age = _elapsed(status.step_started_at, now)
    deadline = f"{step_age:.0f}/{policy.max_step_s:.0f} s of step"
    if verdict.outcome == "pass":
        return _advance(status, now, steps, current, details)
    if verdict.outcome == "fail":
        failures = status.consecutive_failures + 1
        counters = {"consecutive_failures": failures, "consecutive_inconclusive": 0, **judged}
        if failures >= policy.max_failures or step_age >= policy.max_step_s:
            return _rollback(
                status, now, f"gate failed ({failures}/{policy.max_failures}, {deadline}): {details}", **counters
            )
        # The next judgement is on fresh evidence: a transient bad spell must not stay in the sum.
        reason = f"gate failed ({failures}/{policy.max_failures}), holding at {current}%: {details}"
        return _to(
            status,
            now,
            Action(kind="hold", reason=reason),
            phase="progressing",
            window_started_at=now,
            **{**counters, **_fresh_evidence(now)},
        )
    # Inconclusive. Failures are not reset: a window with no data says nothing in the candidate's favour.
    count = status.consecutive_inconclusive + 1
    update: dict[str, object] = {"consecutive_inconclusive": count, **judged}
    no_data = status.consecutive_no_data + 1 if "evidence" not in judged else 0
    if no_data >= policy.max_inconclusive:
        return _rollback(status, now, f"no metrics {no_data}/{policy.max_inconclusive} windows: {details}", **update)
    if step_age >= policy.max_step_s:
        return _rollback(status, now, f"step deadline: inconclusive after {deadline}: {details}", **update)
    reason = f"inconclusive ({count} windows, {deadline}), paused at {current}%: {details}"
    return _to(
        status, now, Action(kind="pause", reason=reason), phase="paused", window_started_at=now, **update
    )


def _advance(status: RolloutStatus, now: float, steps: Sequence[float], current: float, details: str) -> Decision:
    following = next_step_weight(steps, current)
    if following is None or following >= 100:
        return _promote(status, now, f"all gates passed at {current}%: {details}")
    step = steps.index(following)
    traffic = _split(status, following)
    reason = f"gates passed at {current}%; step {step + 1}/{len(steps)}: {following}%: {details}"
    return _to(
        status,
        now,
        Action(kind="set_traffic", traffic=traffic, reason=reason),
        phase="progressing",
        step=step,
        traffic=traffic,
        step_started_at=now,
        window_started_at=now,
        consecutive_failures=0,
        consecutive_inconclusive=0,
        consecutive_no_data=0,
        **_fresh_evidence(now),
    )


# -- blue-green -----------------------------------------------------------------------------------


def _switch(status: RolloutStatus, now: float, reason: str) -> Decision:
    traffic = _split(status, 100.0)
    return _to(
        status,
        now,
        Action(kind="set_traffic", traffic=traffic, reason=reason),
        phase="progressing",
        step=1,
        traffic=traffic,
        step_started_at=now,
        window_started_at=now,
    )


def _scale_down_old(status: RolloutStatus, now: float, reason: str) -> Decision:
    return _to(
        status, now, Action(kind="scale_down", version=status.stable_version, reason=reason), phase="promoted"
    )


def _blue_green(
    policy: BlueGreenPolicy, status: RolloutStatus, window: MetricsWindow, now: float
) -> Decision:
    if status.phase == "pending":
        action = Action(kind="hold", reason=f"{status.candidate_version} idle colour; awaiting smoke result")
        return _begin(status, now, action, step=0)
    elapsed = _elapsed(status.step_started_at, now)
    if window.smoke_ok is False:
        return _rollback(status, now, f"smoke checks failed on {status.candidate_version}")
    if status.step == 0:
        if window.smoke_ok:
            return _switch(
                status,
                now,
                f"smoke passed: 100% to {status.candidate_version}, "
                f"{status.stable_version} warm for {policy.rollback_window_s:.0f} s",
            )
        if elapsed >= policy.smoke_timeout_s:
            return _rollback(status, now, f"no smoke result within {policy.smoke_timeout_s:.0f} s")
        return _hold(status, now, f"awaiting smoke result ({elapsed:.0f}/{policy.smoke_timeout_s:.0f} s)")
    if elapsed >= policy.rollback_window_s:
        return _scale_down_old(
            status,
            now,
            f"rollback window of {policy.rollback_window_s:.0f} s passed; scale down {status.stable_version}",
        )
    return _hold(
        status,
        now,
        f"{status.stable_version} warm for rollback ({elapsed:.0f}/{policy.rollback_window_s:.0f} s)",
    )


# -- A/B and shadow: judged on sums since the start -----------------------------------------------


def _totals(status: RolloutStatus, window: MetricsWindow) -> dict[str, VersionStats]:
    empty = VersionStats()
    return {
        v: status.totals.get(v, empty).plus(window.versions.get(v, empty))
        for v in (status.stable_version, status.candidate_version)
    }


def _ab(policy: ABPolicy, status: RolloutStatus, window: MetricsWindow, now: float) -> Decision:
    if status.phase == "pending":
        traffic = _split(status, policy.candidate_percent)
        reason = (
            f"A/B: {policy.candidate_percent}% of users (salt {policy.salt!r}) to {status.candidate_version}"
        )
        return _begin(
            status, now, Action(kind="set_traffic", traffic=traffic, reason=reason), traffic=traffic
        )
    totals = _totals(status, window)
    a, b = totals[status.stable_version], totals[status.candidate_version]
    result = msprt_test(
        a.conversions,
        a.trials,
        b.conversions,
        b.trials,
        policy.alpha,
        policy.tau,
        prior_p_value=status.ab.p_value if status.ab is not None else 1.0,
        min_trials=policy.min_trials,
        arm_a=status.stable_version,
        arm_b=status.candidate_version,
    )
    summary = (
        f"rate {_fmt(result.rate_b)} ({status.candidate_version}) vs {_fmt(result.rate_a)} "
        f"({status.stable_version}), effect {_fmt(result.effect)}, "
        f"CI [{result.ci_low:.4f}, {result.ci_high:.4f}], p={result.p_value:.4g}, trials {b.trials}/{a.trials}"
    )
    update: dict[str, object] = {"totals": totals, "ab": result, "window_started_at": now}
    if result.winner is not None:
        won = result.winner == status.candidate_version
        traffic = _split(status, 100.0 if won else 0.0)
        action = Action(
            kind="promote_winner",
            traffic=traffic,
            version=result.winner,
            reason=f"winner {result.winner}: {summary}",
        )
        return _to(status, now, action, phase="promoted" if won else "rolled_back", traffic=traffic, **update)
    if _timed_out(status, policy.max_duration_s, now):
        return _rollback(
            status,
            now,
            f"no winner within {policy.max_duration_s:.0f} s, keeping stable: {summary}",
            **update,
        )
    return _to(status, now, Action(kind="hold", reason=f"no winner yet: {summary}"), **update)


def _shadow(policy: ShadowPolicy, status: RolloutStatus, window: MetricsWindow, now: float) -> Decision:
    if status.phase == "pending":
        reason = f"shadowing {policy.sample_percent}% of requests to {status.candidate_version}"
        return _begin(status, now, Action(kind="hold", reason=reason))
    totals = _totals(status, window)
    stable, cand = totals[status.stable_version], totals[status.candidate_version]
    update: dict[str, object] = {"totals": totals, "window_started_at": now}
    if cand.compared < policy.min_samples:
        verdict_outcome, details = "inconclusive", f"compared {cand.compared} < min {policy.min_samples}"
    else:
        verdict = evaluate_gates(policy.gates, stable, cand)
        agreement = cand.agreed / cand.compared
        agree_ok = agreement >= policy.min_agreement
        verdict_outcome = "fail" if not agree_ok or verdict.outcome == "fail" else verdict.outcome
        details = "; ".join(
            (f"agreement {agreement:.4f} (min {policy.min_agreement}) over {cand.compared}", *verdict.reasons)
        )
    if verdict_outcome == "pass":
        action = Action(
            kind="promote", version=status.candidate_version, reason=f"ready to canary: {details}"
        )
        return _to(status, now, action, phase="promoted", **update)
    if verdict_outcome == "fail":
        return _rollback(status, now, f"shadow verdict: not ready: {details}", **update)
    if _timed_out(status, policy.max_duration_s, now):
        return _rollback(
            status, now, f"no shadow verdict within {policy.max_duration_s:.0f} s: {details}", **update
        )
    return _to(status, now, Action(kind="hold", reason=f"shadow collecting: {details}"), **update)
