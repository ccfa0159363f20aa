"""Pure statistics for rollouts: per-version window counts, canary gate checks, the A/B mSPRT.

No clock, no randomness, no I/O: every function maps numbers to a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from serving.rollout.policy import CanaryGates

Outcome = Literal["pass", "fail", "inconclusive"]

# Rates are ratios of counts and gates compare their differences: 0.90 - 0.88 is 0.0200000000000000018
# in floats. A value at the limit in exact arithmetic passes; this is far below any real effect.
_SLACK = 1e-9


class VersionStats(BaseModel):
    """What one version did during one metrics window (or, summed, over a whole A/B or shadow run).

    A NaN p99 (an empty Prometheus histogram) is stored as None: both mean "no data".
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int = Field(default=0, ge=0, description="Requests answered (errors included).")
    errors: int = Field(default=0, ge=0, description="Requests that failed (5xx, timeouts).")
    p99_ms: float | None = Field(
        default=None, ge=0, description="p99 latency in ms; None or NaN when unknown."
    )
    labelled: int = Field(default=0, ge=0, description="Predictions that received a feedback label.")
    correct: int = Field(default=0, ge=0, description="Labelled predictions that matched their label.")
    trials: int = Field(default=0, ge=0, description="Predictions that received a 0/1 outcome (A/B).")
    conversions: int = Field(default=0, ge=0, description="Outcomes equal to 1 (A/B).")
    compared: int = Field(
        default=0, ge=0, description="Shadow copies whose answer was compared with stable's."
    )
    agreed: int = Field(default=0, ge=0, description="Compared shadow copies with the same label as stable.")

    @field_validator("p99_ms", mode="before")
    @classmethod
    def _nan_is_missing(cls, value: object) -> object:
        return None if isinstance(value, float) and math.isnan(value) else value

    @model_validator(mode="after")
    def _parts_within_wholes(self) -> VersionStats:
        for part, whole in (
            ("errors", "requests"),
            ("correct", "labelled"),
            ("conversions", "trials"),
            ("agreed", "compared"),
        ):
            if getattr(self, part) > getattr(self, whole):
                raise ValueError(
                    f"{part} ({getattr(self, part)}) must be <= {whole} ({getattr(self, whole)})"
                )
        return self

    def plus(self, later: VersionStats) -> VersionStats:
        """Counts summed; p99 is `later`'s alone, since percentiles do not add and stale ones mislead."""
        counts = {name: getattr(self, name) + getattr(later, name) for name in _COUNT_FIELDS}
        return VersionStats(**counts, p99_ms=later.p99_ms)


_COUNT_FIELDS = tuple(name for name in VersionStats.model_fields if name != "p99_ms")


def histogram_quantile(q: float, buckets: Mapping[str, float]) -> float | None:
    """Prometheus' histogram_quantile over cumulative `buckets` {le: count}; None when empty.

    Linear interpolation inside the bucket holding the rank, as Prometheus does. This is not
    `distilserve.core.stats.percentile` (nearest rank over raw samples): a window only has
    bucket counts, so the value is an estimate within one bucket's width. A rank in the
    +Inf bucket returns the highest finite bound (Prometheus' convention): a lower bound on the
    truth, so compare such values with care; it is never NaN.
    """
    if not 0 <= q <= 1:
        raise ValueError(f"q must be in [0, 1], got {q}")
    ordered = sorted(((float(le), n) for le, n in buckets.items()), key=lambda kv: kv[0])
    if not ordered or not math.isinf(ordered[-1][0]) or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:  # an empty bucket at the rank (q = 0): its lower edge
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound  # pragma: no cover - the +Inf bucket always holds the rank


class GateVerdict(NamedTuple):
    outcome: Outcome
    reasons: tuple[str, ...]


def finite(value: float | None) -> float | None:
    """`value` when it is a finite number, else None: NaN and missing are the same "no data"."""
    return value if value is not None and math.isfinite(value) else None


def _check_error_rate(
    gates: CanaryGates, stable: VersionStats, candidate: VersionStats
) -> tuple[Outcome, str]:
    s_rate, c_rate = stable.errors / stable.requests, candidate.errors / candidate.requests
    increase = c_rate - s_rate
    detail = f"error rate {c_rate:.4f} vs stable {s_rate:.4f} ({increase:+.4f}, max +{gates.max_error_rate_increase})"
    return ("fail" if increase > gates.max_error_rate_increase + _SLACK else "pass"), detail


def _check_latency(
    gates: CanaryGates, stable_p99: float | None, candidate_p99: float | None
) -> tuple[Outcome, str]:
    c_p99, s_p99 = finite(candidate_p99), finite(stable_p99)
    if c_p99 is None:
        return "inconclusive", "candidate p99 missing or NaN"
    if gates.max_p99_ms is not None and c_p99 > gates.max_p99_ms:
        return "fail", f"p99 {c_p99:.1f} ms > max {gates.max_p99_ms:.1f} ms"
    if gates.max_p99_ratio is None:
        return "pass", f"p99 {c_p99:.1f} ms <= max {gates.max_p99_ms} ms"
    # A stable p99 of 0 ms is a broken histogram, not an infinitely fast model: no ratio exists.
    if s_p99 is None or s_p99 <= 0:
        return "inconclusive", f"stable p99 missing, NaN or 0 ({stable_p99}); p99 ratio undefined"
    ratio = c_p99 / s_p99
    detail = f"p99 {c_p99:.1f} ms / stable {s_p99:.1f} ms = {ratio:.2f}x (max {gates.max_p99_ratio:.2f}x)"
    return ("fail" if ratio > gates.max_p99_ratio + _SLACK else "pass"), detail


def _check_accuracy(gates: CanaryGates, stable: VersionStats, candidate: VersionStats) -> tuple[Outcome, str]:
    if gates.max_accuracy_drop is None:
        return "pass", "accuracy gate off"
    if min(stable.labelled, candidate.labelled) < gates.min_labels:
        return "inconclusive", (
            f"labels {candidate.labelled} (candidate) / {stable.labelled} (stable) < min {gates.min_labels}"
        )
    s_acc, c_acc = stable.correct / stable.labelled, candidate.correct / candidate.labelled
    drop = s_acc - c_acc
    detail = f"accuracy {c_acc:.4f} vs stable {s_acc:.4f} (drop {drop:+.4f}, max {gates.max_accuracy_drop})"
    return ("fail" if drop > gates.max_accuracy_drop + _SLACK else "pass"), detail


def evaluate_gates(
    gates: CanaryGates, stable: VersionStats | None, candidate: VersionStats | None
) -> GateVerdict:
    """Judge one window. Any failed gate fails it; else any missing input makes it inconclusive.

    A failure wins over missing data because a clearly bad candidate should not wait for labels.
    Nothing is skipped for lack of data: a missing number is "inconclusive", never "pass".
    """
    if stable is None or candidate is None:
        return GateVerdict(
            "inconclusive", ("no metrics for " + ("stable" if stable is None else "candidate"),)
        )
    if min(stable.requests, candidate.requests) < gates.min_requests:
        return GateVerdict(
            "inconclusive",
            (
                f"requests {candidate.requests} (candidate) / {stable.requests} (stable) < min {gates.min_requests}",
            ),
        )
    checks = (
        _check_error_rate(gates, stable, candidate),
        _check_latency(gates, stable.p99_ms, candidate.p99_ms),
        _check_accuracy(gates, stable, candidate),
    )
    for outcome in ("fail", "inconclusive"):
        reasons = tuple(detail for result, detail in checks if result == outcome)
        if reasons:
            return GateVerdict(outcome, reasons)
    return GateVerdict("pass", tuple(detail for _, detail in checks))


class ABResult(BaseModel):
    """One reading of the always-valid A/B test. `effect` is rate_b - rate_a."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arm_a: str
    arm_b: str
    trials_a: int
    trials_b: int
    rate_a: float | None = Field(description="Conversion rate of arm A; None before any trial.")
    rate_b: float | None = Field(description="Conversion rate of arm B; None before any trial.")
    effect: float | None = Field(description="rate_b - rate_a; None before both arms have trials.")
    p_value: float = Field(ge=0, le=1, description="Always-valid p-value (running minimum over readings).")
    ci_low: float = Field(
        ge=-1, le=1, description="Lower end of the 1 - alpha confidence sequence on effect."
    )
    ci_high: float = Field(
        ge=-1, le=1, description="Upper end of the 1 - alpha confidence sequence on effect."
    )
    alpha: float
    significant: bool = Field(description="p_value < alpha: stop, the difference is real.")
    winner: str | None = Field(description="The better arm once significant; None means no winner (yet).")


def msprt_test(
    successes_a: int,
    trials_a: int,
    successes_b: int,
    trials_b: int,
    alpha: float = 0.05,
    tau: float = 0.05,
    *,
    prior_p_value: float = 1.0,
    min_trials: int = 1,
    arm_a: str = "a",
    arm_b: str = "b",
) -> ABResult:
    """Mixture SPRT on the difference of two conversion rates (Johari et al., "always valid p-values").

    With theta_hat = rate_b - rate_a ~ N(theta, V) and a N(0, tau^2) mixture over theta, the
    likelihood ratio against theta = 0 is
        Lambda = sqrt(V / (V + tau^2)) * exp(tau^2 * theta_hat^2 / (2 V (V + tau^2))).
    The always-valid p-value is min(prior_p_value, 1 / Lambda): feed each reading's p_value back
    as the next `prior_p_value` and the test stays valid however often it is read. The confidence
    sequence is every theta0 whose Lambda(theta0) < 1 / alpha; it excludes 0 exactly when this
    reading's p < alpha. V = sum of p(1-p)/n per arm, p smoothed as (s + 0.5) / (n + 1) so an arm of
    all 0s or all 1s still has variance (without it one lucky arm would give infinite evidence).

    Raises:
        ValueError: counts, alpha, tau or prior_p_value out of range.
    """
    for name, s, n in (("a", successes_a, trials_a), ("b", successes_b, trials_b)):
        if not 0 <= s <= n:
            raise ValueError(f"arm {name}: need 0 <= successes ({s}) <= trials ({n})")
    if not (0 < alpha < 1 and tau > 0 and 0 < prior_p_value <= 1 and min_trials >= 1):
        raise ValueError(
            f"need 0 < alpha < 1, tau > 0, 0 < prior_p_value <= 1, min_trials >= 1; got alpha={alpha}, "
            f"tau={tau}, prior_p_value={prior_p_value}, min_trials={min_trials} (e.g. 0.05, 0.05, 1.0, 100)"
        )
    rate_a = successes_a / trials_a if trials_a else None
    rate_b = successes_b / trials_b if trials_b else None
    effect = rate_b - rate_a if rate_a is not None and rate_b is not None else None
    base = {
        "arm_a": arm_a,
        "arm_b": arm_b,
        "trials_a": trials_a,
        "trials_b": trials_b,
        "rate_a": rate_a,
        "rate_b": rate_b,
        "effect": effect,
        "alpha": alpha,
    }
    if effect is None or min(trials_a, trials_b) < min_trials:
        return ABResult(
            **base, p_value=prior_p_value, ci_low=-1.0, ci_high=1.0, significant=False, winner=None
        )

    var = _smoothed_var(successes_a, trials_a) / trials_a + _smoothed_var(successes_b, trials_b) / trials_b
    tau2 = tau * tau
    log_lr = 0.5 * math.log(var / (var + tau2)) + tau2 * effect**2 / (2 * var * (var + tau2))
    # exp(-log_lr) rather than 1 / exp(log_lr): overflow-free for huge evidence (p underflows to 0).
    p_value = min(prior_p_value, 1.0, math.exp(-log_lr))
    half = math.sqrt(
        2 * var * (var + tau2) / tau2 * (math.log(1 / alpha) + 0.5 * math.log((var + tau2) / var))
    )
    significant = p_value < alpha
    winner = (arm_b if effect > 0 else arm_a) if significant and effect != 0 else None
    return ABResult(
        **base,
        p_value=p_value,
        ci_low=max(effect - half, -1.0),
        ci_high=min(effect + half, 1.0),
        significant=significant,
        winner=winner,
    )


def _smoothed_var(successes: int, trials: int) -> float:
    p = (successes + 0.5) / (trials + 1)
    return p * (1 - p)
