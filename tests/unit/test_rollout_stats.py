"""serving.rollout.stats: window counts, canary gate checks and the always-valid A/B test."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from pydantic import ValidationError
from scipy import integrate, stats

from serving.rollout.policy import CanaryGates
from serving.rollout.stats import VersionStats, evaluate_gates, msprt_test

ALPHA = 0.05


# -- VersionStats ----------------------------------------------------------------------------------


def test_nan_p99_is_stored_as_missing() -> None:
    assert VersionStats(requests=10, p99_ms=float("nan")).p99_ms is None


@pytest.mark.parametrize(
    ("fields", "quoted"),
    [
        pytest.param(
            {"requests": 5, "errors": 6}, "errors (6) must be <= requests (5)", id="errors>requests"
        ),
        pytest.param(
            {"labelled": 3, "correct": 4}, "correct (4) must be <= labelled (3)", id="correct>labelled"
        ),
        pytest.param(
            {"trials": 1, "conversions": 2}, "conversions (2) must be <= trials (1)", id="conv>trials"
        ),
        pytest.param(
            {"compared": 0, "agreed": 1}, "agreed (1) must be <= compared (0)", id="agreed>compared"
        ),
    ],
)
def test_parts_within_wholes_quote_values(fields: dict[str, int], quoted: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(quoted)):
        VersionStats(**fields)


def test_plus_sums_counts_and_keeps_only_the_later_p99() -> None:
    earlier = VersionStats(
        requests=100, errors=2, p99_ms=40.0, trials=50, conversions=5, compared=30, agreed=29
    )
    later = VersionStats(requests=50, errors=1, p99_ms=None, trials=20, conversions=3, compared=10, agreed=9)
    total = earlier.plus(later)
    # 100 + 50 = 150 requests, 2 + 1 = 3 errors, 50 + 20 = 70 trials, 5 + 3 = 8 conversions, 30 + 10, 29 + 9.
    assert (total.requests, total.errors, total.trials, total.conversions) == (150, 3, 70, 8)
    assert (total.compared, total.agreed) == (40, 38)
    # The later window had no p99: the stale 40 ms must not stand in for it.
    assert total.p99_ms is None


# -- canary gates -----------------------------------------------------------------------------------

GATES = CanaryGates(
    min_requests=100, min_labels=50, max_error_rate_increase=0.01, max_p99_ratio=1.5, max_accuracy_drop=0.02
)
STABLE = VersionStats(requests=1000, errors=10, p99_ms=40.0, labelled=100, correct=90)


def cand(**fields: object) -> VersionStats:
    return STABLE.model_copy(update=fields)


@pytest.mark.parametrize(
    ("gates", "candidate", "outcome"),
    [
        # Same numbers as stable: +0 error points, 1.0x p99, 0 accuracy drop.
        pytest.param(GATES, cand(), "pass", id="equal-passes"),
        # 20/1000 = 2 % vs 1 %: +1 point is exactly the limit, not above it.
        pytest.param(GATES, cand(errors=20), "pass", id="error-increase-at-limit"),
        # 21/1000 = 2.1 %: +1.1 points > 1.
        pytest.param(GATES, cand(errors=21), "fail", id="error-increase-over-limit"),
        # 60 / 40 = 1.5x at the limit; 61 / 40 = 1.525x over it.
        pytest.param(GATES, cand(p99_ms=60.0), "pass", id="p99-ratio-at-limit"),
        pytest.param(GATES, cand(p99_ms=61.0), "fail", id="p99-ratio-over-limit"),
        # Absolute gate only: 90 ms > 80 ms fails although no ratio is computed.
        pytest.param(
            CanaryGates(max_p99_ratio=None, max_p99_ms=80.0, max_accuracy_drop=None),
            cand(p99_ms=90.0),
            "fail",
            id="p99-absolute-over",
        ),
        pytest.param(
            CanaryGates(max_p99_ratio=None, max_p99_ms=80.0, max_accuracy_drop=None),
            cand(p99_ms=70.0),
            "pass",
            id="p99-absolute-under",
        ),
        # 88/100 = 0.88 vs 0.90: drop 0.02 at the limit; 87/100: drop 0.03 over it.
        pytest.param(GATES, cand(correct=88), "pass", id="accuracy-drop-at-limit"),
        pytest.param(GATES, cand(correct=87), "fail", id="accuracy-drop-over-limit"),
        pytest.param(GATES, cand(requests=99, errors=0), "inconclusive", id="requests-below-min"),
        pytest.param(GATES, cand(labelled=49, correct=49), "inconclusive", id="labels-below-min"),
        pytest.param(GATES, cand(p99_ms=None), "inconclusive", id="p99-missing"),
        pytest.param(GATES, cand(p99_ms=float("nan")), "inconclusive", id="p99-nan"),
        # A broken metric never hides a clear failure: 50 % errors fail even with no p99.
        pytest.param(GATES, cand(errors=500, p99_ms=None), "fail", id="fail-beats-missing"),
        # Accuracy gate off: no labels needed at all.
        pytest.param(
            GATES.model_copy(update={"max_accuracy_drop": None}),
            cand(labelled=0, correct=0),
            "pass",
            id="accuracy-gate-off",
        ),
    ],
)
def test_evaluate_gates(gates: CanaryGates, candidate: VersionStats, outcome: str) -> None:
    verdict = evaluate_gates(gates, STABLE, candidate)
    assert verdict.outcome == outcome, verdict.reasons
    assert verdict.reasons


@pytest.mark.parametrize(
    ("stable", "candidate"),
    [
        pytest.param(None, STABLE, id="no-stable"),
        pytest.param(STABLE, None, id="no-candidate"),
        pytest.param(STABLE.model_copy(update={"p99_ms": None}), STABLE, id="stable-p99-missing"),
        # 0 ms is an empty histogram, not a fast model: a ratio against it would be infinite.
        pytest.param(STABLE.model_copy(update={"p99_ms": 0.0}), STABLE, id="stable-p99-zero"),
    ],
)
def test_missing_inputs_are_inconclusive(stable: VersionStats | None, candidate: VersionStats | None) -> None:
    assert evaluate_gates(GATES, stable, candidate).outcome == "inconclusive"


def test_gates_need_a_latency_gate_and_quote_the_values() -> None:
    with pytest.raises(ValidationError, match=r"max_p99_ratio=None, max_p99_ms=None"):
        CanaryGates(max_p99_ratio=None, max_p99_ms=None)


# -- mSPRT ------------------------------------------------------------------------------------------


def mixture_lr_by_quadrature(theta_hat: float, var: float, tau: float) -> float:
    """Lambda from its definition, by numeric integration: independent of the closed form under test."""

    def integrand(theta: float) -> float:
        return stats.norm.pdf(theta_hat, theta, math.sqrt(var)) * stats.norm.pdf(theta, 0, tau)

    numerator, _ = integrate.quad(
        integrand, -1, 1, points=[0.0, theta_hat], epsabs=0, epsrel=1e-12, limit=200
    )
    return numerator / stats.norm.pdf(theta_hat, 0, math.sqrt(var))


def smoothed_var(s: int, n: int) -> float:
    p = (s + 0.5) / (n + 1)
    return p * (1 - p) / n


@pytest.mark.parametrize(
    ("counts", "p_expected", "ci_expected"),
    [
        # 100/1000 vs 150/1000. V = .10040*.89960/1000 + .15035*.84965/1000 = 2.1806e-4, tau^2 = .0025:
        # log L = .5 ln(V/(V+tau^2)) + tau^2 .05^2 / (2 V (V+tau^2)) = -1.2614 + 5.2724 = 4.011; p = e^-4.011.
        pytest.param(
            (100, 1000, 150, 1000),
            0.018116557610854307,
            (0.005070897014863754, 0.09492910298513622),
            id="hand-computed",
        ),
        # Seeded data: default_rng(20240601), 2000 draws at 10 % then 2000 at 13 % -> 201 and 267 successes.
        pytest.param(
            "seeded", 0.03162677194795917, (0.0015265708738059769, 0.06447342912619403), id="seeded"
        ),
    ],
)
def test_msprt_reference_values(
    counts: tuple[int, int, int, int] | str, p_expected: float, ci_expected: tuple[float, float]
) -> None:
    if counts == "seeded":
        rng = np.random.default_rng(20240601)
        a, b = rng.random(2000) < 0.10, rng.random(2000) < 0.13
        counts = (int(a.sum()), 2000, int(b.sum()), 2000)
        assert counts == (201, 2000, 267, 2000)
    sa, na, sb, nb = counts
    result = msprt_test(sa, na, sb, nb, ALPHA, 0.05)
    assert math.isclose(result.p_value, p_expected, rel_tol=1e-9)
    assert math.isclose(result.ci_low, ci_expected[0], rel_tol=1e-9)
    assert math.isclose(result.ci_high, ci_expected[1], rel_tol=1e-9)
    # The closed form must equal the mixture integral it claims to be (quadrature, rel 1e-6).
    lam = mixture_lr_by_quadrature(sb / nb - sa / na, smoothed_var(sa, na) + smoothed_var(sb, nb), 0.05)
    assert math.isclose(result.p_value, 1 / lam, rel_tol=1e-6)
    assert result.significant and result.winner == "b"
    assert result.ci_low <= result.effect <= result.ci_high


def test_p_value_is_a_running_minimum_and_ci_excludes_zero_exactly_when_significant() -> None:
    # 100/1000 vs 110/1000 alone gives p = 1 (weak evidence); an earlier reading of 0.01 must be kept.
    weak = msprt_test(100, 1000, 110, 1000, ALPHA, 0.05)
    assert weak.p_value == 1.0 and not weak.significant and weak.winner is None
    assert weak.ci_low < 0 < weak.ci_high
    assert msprt_test(100, 1000, 110, 1000, ALPHA, 0.05, prior_p_value=0.3).p_value == 0.3
    for sb in range(100, 200, 5):
        r = msprt_test(100, 1000, sb, 1000, ALPHA, 0.05)
        assert r.significant == (r.ci_low > 0), (sb, r)


def test_swapping_arms_mirrors_the_result() -> None:
    ab = msprt_test(100, 1000, 150, 1000, ALPHA, 0.05, arm_a="1", arm_b="2")
    ba = msprt_test(150, 1000, 100, 1000, ALPHA, 0.05, arm_a="2", arm_b="1")
    assert math.isclose(ab.p_value, ba.p_value, rel_tol=1e-12)
    assert math.isclose(ab.effect, -ba.effect, rel_tol=1e-12)
    assert ab.winner == ba.winner == "2"


def test_too_few_trials_is_no_reading() -> None:
    r = msprt_test(0, 99, 99, 99, ALPHA, 0.05, min_trials=100)
    assert (r.p_value, r.significant, r.winner, r.ci_low, r.ci_high) == (1.0, False, None, -1.0, 1.0)


def test_degenerate_arms_give_finite_evidence() -> None:
    # All 0s vs all 1s: smoothing keeps V > 0, so p is a number (0 after underflow), not a crash.
    r = msprt_test(0, 200, 200, 200, ALPHA, 0.05)
    assert r.significant and r.winner == "b" and r.p_value < 1e-12
    # Identical all-0 arms: effect 0, no winner.
    assert msprt_test(0, 500, 0, 500, ALPHA, 0.05).winner is None


@pytest.mark.parametrize(
    ("args", "quoted"),
    [
        pytest.param((11, 10, 0, 10, ALPHA, 0.05), "successes (11) <= trials (10)", id="successes>trials"),
        pytest.param((1, 10, 1, 10, 1.5, 0.05), "alpha=1.5", id="alpha"),
        pytest.param((1, 10, 1, 10, ALPHA, 0.0), "tau=0.0", id="tau"),
    ],
)
def test_msprt_rejects_bad_arguments(args: tuple, quoted: str) -> None:
    with pytest.raises(ValueError, match=re.escape(quoted)):
        msprt_test(*args)


def simulate(
    rate_a: float, rate_b: float, experiments: int, seed: int, *, naive: bool = False
) -> tuple[list[str | None], list[tuple[float, float]]]:
    """Peek every 50 outcomes per arm up to 3000; stop at the first significant reading.

    naive=True swaps in a fixed-horizon two-proportion z-test read at every peek: the mistake the
    mSPRT exists to avoid, used to show the simulation can see inflated false positives.
    """
    rng = np.random.default_rng(seed)
    winners: list[str | None] = []
    intervals: list[tuple[float, float]] = []
    for _ in range(experiments):
        ca = np.cumsum(rng.random(3000) < rate_a)
        cb = np.cumsum(rng.random(3000) < rate_b)
        prior, winner = 1.0, None
        for n in range(100, 3001, 50):
            sa, sb = int(ca[n - 1]), int(cb[n - 1])
            if naive:
                pooled = (sa + sb) / (2 * n)
                se = math.sqrt(pooled * (1 - pooled) * 2 / n) or 1.0
                if 2 * stats.norm.sf(abs(sb - sa) / n / se) < ALPHA:
                    winner = "b" if sb > sa else "a"
                    break
                continue
            r = msprt_test(sa, n, sb, n, ALPHA, 0.05, prior_p_value=prior, min_trials=100)
            prior = r.p_value
            if r.significant:
                winner = r.winner
                intervals.append((r.ci_low, r.ci_high))
                break
        winners.append(winner)
    return winners, intervals


# 200 A/A experiments: the false-positive count is Binomial(200, <= 0.05); its sd at 0.05 is
# sqrt(200 * .05 * .95) = 3.08, so we allow alpha + 0.03 (~2 sd, 16 of 200) for sampling noise.
AA_TOLERANCE = 0.03


def test_aa_false_positive_rate_stays_below_alpha_under_continuous_monitoring() -> None:
    winners, _ = simulate(0.10, 0.10, experiments=200, seed=7)
    false_positive_rate = sum(w is not None for w in winners) / len(winners)
    assert false_positive_rate <= ALPHA + AA_TOLERANCE, false_positive_rate
    # The same peeking with a fixed-horizon z-test blows far past alpha: the simulation can fail.
    naive, _ = simulate(0.10, 0.10, experiments=200, seed=7, naive=True)
    assert sum(w is not None for w in naive) / len(naive) > ALPHA + AA_TOLERANCE


def test_ab_with_a_real_difference_finds_the_right_winner() -> None:
    # 10 % vs 15 %: at 3000 per arm the z-score is .05 / sqrt((.09 + .1275) / 3000) = 5.9, so almost
    # every run should stop; a wrong-sign winner would be a bug, not bad luck.
    winners, intervals = simulate(0.10, 0.15, experiments=50, seed=11)
    assert winners.count("b") >= 45, winners
    assert winners.count("a") == 0
    # The confidence sequence covers the true effect (.05) at the stopping time in >= 90 % of runs.
    covered = sum(low <= 0.05 <= high for low, high in intervals)
    assert covered >= 0.9 * len(intervals), intervals
