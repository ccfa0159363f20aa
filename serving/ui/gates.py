"""Each rollout gate as a row the page can show: measured value, threshold, pass/fail (pure).

The controller's verdict (stats.evaluate_gates) is what decides; these rows spell out the numbers
behind it for a person. A value that cannot be measured yet is "no data", never "pass".
"""

from __future__ import annotations

from typing import Any, Literal

from serving.rollout.decide import RolloutStatus
from serving.rollout.policy import ABPolicy, CanaryGates, CanaryPolicy, RolloutPolicy, ShadowPolicy
from serving.rollout.stats import VersionStats, finite

Op = Literal[">=", "<="]
# The same tolerance as stats.py: a value equal to its threshold passes despite float rounding.
SLACK = 1e-9


def gate(name: str, value: float | None, threshold: float, op: Op, unit: str = "") -> dict[str, Any]:
    """One row; outcome 'pass' | 'fail' | 'no data'."""
    value = finite(value)
    if value is None:
        outcome = "no data"
    elif op == ">=":
        outcome = "pass" if value >= threshold - SLACK else "fail"
    else:
        outcome = "pass" if value <= threshold + SLACK else "fail"
    return {"name": name, "value": value, "threshold": threshold, "op": op, "unit": unit, "outcome": outcome}


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def canary_gates(g: CanaryGates, stable: VersionStats | None, cand: VersionStats | None) -> list[dict[str, Any]]:
    """Rows of a canary (or shadow) window: candidate against stable."""
    s, c = stable or VersionStats(), cand or VersionStats()
    have = stable is not None and cand is not None
    rows = [gate("requests (fewer of the two)", min(s.requests, c.requests) if have else None,
                 g.min_requests, ">=")]
    s_err, c_err = _ratio(s.errors, s.requests), _ratio(c.errors, c.requests)
    rows.append(gate("error rate increase", c_err - s_err if c_err is not None and s_err is not None else None,
                     g.max_error_rate_increase, "<=", "ratio"))
    s_p99, c_p99 = finite(s.p99_ms), finite(c.p99_ms)
    if g.max_p99_ratio is not None:
        ratio = c_p99 / s_p99 if c_p99 is not None and s_p99 else None
        rows.append(gate("p99 / stable p99", ratio, g.max_p99_ratio, "<=", "x"))
    if g.max_p99_ms is not None:
        rows.append(gate("candidate p99", c_p99, g.max_p99_ms, "<=", "ms"))
    if g.max_accuracy_drop is not None:
        rows.append(gate("feedback labels (fewer of the two)", min(s.labelled, c.labelled) if have else None,
                         g.min_labels, ">="))
        s_acc, c_acc = _ratio(s.correct, s.labelled), _ratio(c.correct, c.labelled)
        rows.append(gate("accuracy drop", s_acc - c_acc if s_acc is not None and c_acc is not None else None,
                         g.max_accuracy_drop, "<=", "ratio"))
    return rows


def gate_rows(policy: RolloutPolicy | None, status: RolloutStatus | None,
              window: dict[str, VersionStats]) -> list[dict[str, Any]]:
    """The gates of `policy` measured on `window` (canary) or on the running totals (A/B, shadow)."""
    if policy is None or status is None:
        return []
    stable, cand = status.stable_version, status.candidate_version
    match policy:
        case CanaryPolicy():
            return canary_gates(policy.gates, window.get(stable), window.get(cand))
        case ShadowPolicy():
            shadow = status.totals.get(cand)
            rows = [
                gate("compared copies", shadow.compared if shadow else None, policy.min_samples, ">="),
                gate("label agreement", _ratio(shadow.agreed, shadow.compared) if shadow else None,
                     policy.min_agreement, ">=", "ratio"),
            ]
            return rows + canary_gates(policy.gates, status.totals.get(stable), shadow)[1:]
        case ABPolicy():
            ab = status.ab
            return [
                gate("outcomes (fewer arm)", min(ab.trials_a, ab.trials_b) if ab else None, policy.min_trials, ">="),
                gate("p-value (always valid)", ab.p_value if ab else None, policy.alpha, "<="),
            ]
    return []  # blue-green: its smoke test is a decision, shown in the log


def steps(policy: RolloutPolicy | None, status: RolloutStatus | None) -> list[dict[str, Any]]:
    """The rollout's stages with 'done' | 'current' | 'todo' (canary: its step weights)."""
    if status is None:
        return []
    over = status.phase in ("promoted", "rolled_back", "aborted")
    if isinstance(policy, CanaryPolicy):
        labels = [f"{w:g}%" for w in policy.step_weights]
        current = status.step
    elif status.strategy == "blue_green":
        labels, current = ["smoke test", "switched", "old colour retired"], status.step
    elif status.strategy == "shadow":
        labels, current = ["shadowing", "verdict"], 0
    else:
        labels, current = ["split", "winner"], 0
    if status.phase == "promoted":
        current = len(labels)
    out = []
    for i, label in enumerate(labels):
        state = "done" if i < current else "current" if i == current and not over else "todo"
        out.append({"label": label, "state": state})
    return out
