"""serving.rollout.decide and policy: every rollout rule as a table of (status, window, now) -> decision."""

from __future__ import annotations

import ast
import math
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from distilserve.core.card import LatencyStats, Lineage, ModelCard
from serving.rollout import (
    ABPolicy,
    BlueGreenPolicy,
    CanaryGates,
    CanaryPolicy,
    MetricsWindow,
    RolloutPolicy,
    RolloutStatus,
    ShadowPolicy,
    VersionStats,
    decide,
    gates_from_card,
    next_step_weight,
    parse_policy,
    start_status,
)
from serving.rollout.decide import accumulate

STABLE, CAND = "1", "2"
T0 = 1000.0
CANARY = CanaryPolicy(
    step_interval_s=60,
    gates=CanaryGates(
        min_requests=100,
        min_labels=50,
        max_error_rate_increase=0.01,
        max_p99_ratio=1.5,
        max_accuracy_drop=0.02,
    ),
    max_inconclusive=3,
    max_failures=2,
)
BLUE_GREEN = BlueGreenPolicy(smoke_timeout_s=120, rollback_window_s=300)
AB = ABPolicy(salt="exp-1", candidate_percent=50, alpha=0.05, tau=0.05, min_trials=100, max_duration_s=3600)
SHADOW = ShadowPolicy(
    sample_percent=10,
    min_samples=500,
    min_agreement=0.95,
    max_duration_s=3600,
    gates=CanaryGates(min_requests=100, max_p99_ratio=2.0, max_accuracy_drop=None),
)


def vs(**fields: object) -> VersionStats:
    """A healthy window: 1 % errors, p99 40 ms, accuracy 90/100."""
    return VersionStats(
        **{"requests": 1000, "errors": 10, "p99_ms": 40.0, "labelled": 100, "correct": 90, **fields}
    )


HEALTHY = vs()


def window(
    candidate: VersionStats | None = HEALTHY, stable: VersionStats | None = HEALTHY, **fields: object
) -> MetricsWindow:
    versions = {v: s for v, s in ((STABLE, stable), (CAND, candidate)) if s is not None}
    return MetricsWindow(versions=versions, **fields)


def at(policy: RolloutPolicy, candidate_percent: float, **fields: object) -> RolloutStatus:
    """A rollout in progress since T0 - 500 whose current step and window began at T0."""
    base = {"phase": "progressing", "started_at": T0 - 500, "step_started_at": T0, "window_started_at": T0}
    return RolloutStatus(
        strategy=policy.strategy,
        stable_version=STABLE,
        candidate_version=CAND,
        traffic={STABLE: 100 - candidate_percent, CAND: candidate_percent},
        **{**base, **fields},
    )


def run(
    policy: RolloutPolicy, status: RolloutStatus, w: MetricsWindow, now: float, expected: tuple
) -> RolloutStatus:
    """decide() once; check (action kind, phase, candidate traffic); return the new status."""
    action, new = decide(policy, status, w, now)
    assert (action.kind, new.phase, new.traffic[CAND]) == expected, action.reason
    assert new.reason == action.reason and new.updated_at == now
    if action.traffic is not None:
        assert new.traffic == action.traffic and math.fsum(action.traffic.values()) == 100
    return new


# -- canary: one window at a time ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "w", "now", "expected", "counters"),
    [
        # 30 s into a 60 s window: nothing to judge yet.
        pytest.param(
            at(CANARY, 5, step=1),
            window(),
            T0 + 30,
            ("hold", "progressing", 5),
            (0, 0),
            id="hold-mid-interval",
        ),
        # 60 s >= 60 s and all gates pass: 5 % -> the next step, 25 %.
        pytest.param(
            at(CANARY, 5, step=1),
            window(),
            T0 + 60,
            ("set_traffic", "progressing", 25),
            (0, 0),
            id="advance-after-interval",
        ),
        # The step after 50 is 100: that is promotion, not another window at 100 % with no stable to compare.
        pytest.param(
            at(CANARY, 50, step=3),
            window(),
            T0 + 60,
            ("promote", "promoted", 100),
            (0, 0),
            id="promote-after-last-step",
        ),
        # 50/1000 = 5 % vs 1 %: +4 points > +1. First failure of max 2: hold at 5 %.
        pytest.param(
            at(CANARY, 5, step=1),
            window(vs(errors=50)),
            T0 + 60,
            ("hold", "progressing", 5),
            (0, 1),
            id="first-failure-holds",
        ),
        # Second consecutive failure (1 + 1 = 2 = max_failures): roll back.
        pytest.param(
            at(CANARY, 5, step=1, consecutive_failures=1),
            window(vs(errors=50)),
            T0 + 60,
            ("rollback", "rolled_back", 0),
            (0, 2),
            id="rollback-high-error-rate",
        ),
        # 200 / 40 = 5x p99 > 1.5x.
        pytest.param(
            at(CANARY, 5, step=1, consecutive_failures=1),
            window(vs(p99_ms=200.0)),
            T0 + 60,
            ("rollback", "rolled_back", 0),
            (0, 2),
            id="rollback-5x-latency",
        ),
        # 80/100 = 0.80 vs 0.90: drop 0.10 > 0.02.
        pytest.param(
            at(CANARY, 5, step=1, consecutive_failures=1),
            window(vs(correct=80)),
            T0 + 60,
            ("rollback", "rolled_back", 0),
            (0, 2),
            id="rollback-accuracy-drop",
        ),
        # 20 requests < 100: inconclusive, 1 of 3 allowed -> pause, traffic frozen.
        pytest.param(
            at(CANARY, 5, step=1),
            window(vs(requests=20, errors=0)),
            T0 + 60,
            ("pause", "paused", 5),
            (1, 0),
            id="pause-on-inconclusive",
        ),
        pytest.param(
            at(CANARY, 5, step=1),
            window(candidate=None),
            T0 + 60,
            ("pause", "paused", 5),
            (1, 0),
            id="missing-candidate-metrics-pause",
        ),
        pytest.param(
            at(CANARY, 5, step=1),
            window(stable=None),
            T0 + 60,
            ("pause", "paused", 5),
            (1, 0),
            id="missing-stable-metrics-pause",
        ),
        pytest.param(
            at(CANARY, 5, step=1),
            window(vs(p99_ms=float("nan"))),
            T0 + 60,
            ("pause", "paused", 5),
            (1, 0),
            id="nan-p99-pauses",
        ),
        pytest.param(
            at(CANARY, 5, step=1),
            window(vs(labelled=10, correct=10)),
            T0 + 60,
            ("pause", "paused", 5),
            (1, 0),
            id="too-few-labels-pause",
        ),
        # 2 earlier windows with no metrics at all + this one = 3 = max_inconclusive: roll back.
        pytest.param(
            at(CANARY, 5, step=1, phase="paused", consecutive_inconclusive=2, consecutive_no_data=2),
            MetricsWindow(),
            T0 + 60,
            ("rollback", "rolled_back", 0),
            (3, 0),
            id="rollback-after-repeated-inconclusive",
        ),
        # Auto-paused and a full window passes: resume and advance, counters reset.
        pytest.param(
            at(CANARY, 5, step=1, phase="paused", consecutive_inconclusive=2),
            window(),
            T0 + 60,
            ("set_traffic", "progressing", 25),
            (0, 0),
            id="pass-after-pause-advances",
        ),
        pytest.param(
            at(CANARY, 5, step=1, phase="paused", consecutive_inconclusive=1),
            window(),
            T0 + 10,
            ("hold", "paused", 5),
            (1, 0),
            id="paused-mid-interval-holds",
        ),
        # Missing data says nothing in the candidate's favour: the failure count survives it.
        pytest.param(
            at(CANARY, 5, step=1, consecutive_failures=1),
            window(vs(p99_ms=None)),
            T0 + 60,
            ("pause", "paused", 5),
            (1, 1),
            id="inconclusive-keeps-failures",
        ),
        # A clear failure is not hidden by a missing p99: 50 % errors fail the window.
        pytest.param(
            at(CANARY, 5, step=1, consecutive_failures=1),
            window(vs(errors=500, p99_ms=None)),
            T0 + 60,
            ("rollback", "rolled_back", 0),
            (0, 2),
            id="failure-beats-missing",
        ),
    ],
)
def test_canary_window(
    status: RolloutStatus, w: MetricsWindow, now: float, expected: tuple, counters: tuple[int, int]
) -> None:
    new = run(CANARY, status, w, now, expected)
    assert (new.consecutive_inconclusive, new.consecutive_failures) == counters
    if now - T0 >= CANARY.step_interval_s and new.phase not in ("promoted", "rolled_back"):
        assert new.window_started_at == now, "a judged window must not be judged again"


# -- canary: the windows of one step add up --------------------------------------------------------

THIN = vs(requests=50, errors=0, labelled=30, correct=27)  # half a sample: 50 < 100 requests, 30 < 50 labels


def gathered(candidate: VersionStats, stable: VersionStats = HEALTHY, **fields: object) -> dict[str, object]:
    """Status fields of a step that has already gathered `candidate` / `stable` since T0 - 60."""
    return {"evidence": {STABLE: stable, CAND: candidate}, "evidence_started_at": T0 - 60, **fields}


@pytest.mark.parametrize(
    ("status", "w", "now", "expected", "counters", "evidence"),
    [
        # 50 < 100 candidate requests: inconclusive, but the 50 are kept and the step goes on.
        pytest.param(
            at(CANARY, 5, step=1),
            window(THIN),
            T0 + 60,
            ("pause", "paused", 5),
            (1, 0),
            50,
            id="thin-window-is-kept",
        ),
        # 50 + 50 = 100 >= 100 requests, 30 + 30 = 60 >= 50 labels, accuracy 54/60 = 0.90 vs
        # (90 + 90)/200 = 0.90, 0 errors vs 1 %: passes -> 25 %, and the next step starts empty.
        pytest.param(
            at(CANARY, 5, step=1, phase="paused", consecutive_inconclusive=1, **gathered(THIN)),
            window(THIN),
            T0 + 60,
            ("set_traffic", "progressing", 25),
            (0, 0),
            0,
            id="accumulate-then-pass",
        ),
        # Labels 30 + 30 = 60 >= 50 with 24 + 24 = 48 correct: 0.80 vs 0.90, drop 0.10 > 0.02. Neither
        # window alone had the 50 labels to say so. First failure of 2: hold, on fresh evidence.
        pytest.param(
            at(CANARY, 5, step=1, **gathered(vs(requests=50, errors=0, labelled=30, correct=24))),
            window(vs(requests=50, errors=0, labelled=30, correct=24)),
            T0 + 60,
            ("hold", "progressing", 5),
            (0, 1),
            0,
            id="accumulate-then-fail",
        ),
        # The step began 3540 s before T0: at T0 + 60 it is 3600 s old = max_step_s, and 50 + 30 = 80
        # < 100 requests is still inconclusive: roll back.
        pytest.param(
            at(CANARY, 5, step=1, started_at=T0 - 4000, step_started_at=T0 - 3540, **gathered(THIN)),
            window(vs(requests=30, errors=0)),
            T0 + 60,
            ("rollback", "rolled_back", 0),
            (1, 0),
            80,
            id="deadline-rollback",
        ),
        # One second earlier (3599 s < 3600 s) the same evidence extends the step.
        pytest.param(
            at(CANARY, 5, step=1, started_at=T0 - 4000, step_started_at=T0 - 3539, **gathered(THIN)),
            window(vs(requests=30, errors=0)),
            T0 + 60,
            ("pause", "paused", 5),
            (1, 0),
            80,
            id="inconclusive-extends-step-until-deadline",
        ),
        # 5 errors in 20 requests, before min_requests: a sample of 100 may hold (0.01 + 0.01) x 100
        # = 2 errors at stable's 10/1000; 5 > 2 fails it whatever the other 80 do. 2nd failure: roll back.
        pytest.param(
            at(CANARY, 5, step=1, consecutive_failures=1),
            window(vs(requests=20, errors=5)),
            T0 + 60,
            ("rollback", "rolled_back", 0),
            (0, 2),
            20,
            id="error-gate-fails-before-min-samples",
        ),
        # 2 errors in 20 = exactly the 2 a full sample may hold: not conclusive yet, keep gathering.
        pytest.param(
            at(CANARY, 5, step=1),
            window(vs(requests=20, errors=2)),
            T0 + 60,
            ("pause", "paused", 5),
            (1, 0),
            20,
            id="few-errors-wait-for-min-samples",
        ),
        # 50 + 50 = 100 requests would be enough, but this window's p99 is NaN: the step's p99 is
        # unknown, so no promotion; the evidence starts again rather than carry the gap.
        pytest.param(
            at(CANARY, 50, step=3, **gathered(THIN)),
            window(vs(requests=50, errors=0, labelled=30, correct=27, p99_ms=float("nan"))),
            T0 + 60,
            ("pause", "paused", 50),
            (1, 0),
            0,
            id="nan-never-promotes",
        ),
        # A window with no metrics at all adds nothing: the 50 gathered stay, no_data counts 1.
        pytest.param(
            at(CANARY, 5, step=1, **gathered(THIN)),
            MetricsWindow(),
            T0 + 60,
            ("pause", "paused", 5),
            (1, 0),
            50,
            id="blind-window-keeps-evidence",
        ),
    ],
)
def test_canary_windows_add_up(
    status: RolloutStatus,
    w: MetricsWindow,
    now: float,
    expected: tuple,
    counters: tuple[int, int],
    evidence: int,
) -> None:
    new = run(CANARY, status, w, now, expected)
    assert (new.consecutive_inconclusive, new.consecutive_failures) == counters
    assert new.evidence.get(CAND, VersionStats()).requests == evidence
    if evidence == 0 and new.phase not in ("promoted", "rolled_back"):
        assert new.evidence_started_at == now, "fresh evidence begins now"


def test_thin_canary_of_the_issue_advances_instead_of_rolling_back() -> None:
    """1 % of ~50 req/s in 15 s windows: ~8 candidate requests a window (the issue's report)."""
    policy = CANARY.model_copy(update={"step_interval_s": 15.0})
    _, status = decide(policy, start_status(policy, STABLE, CAND), window(), T0)
    stable = vs(requests=742, errors=7, labelled=0, correct=0)
    thin = vs(requests=8, errors=0, labelled=4, correct=4)
    kinds = []
    for i in range(1, 14):
        action, status = decide(policy, status, window(thin, stable), T0 + 15 * i)
        kinds.append(action.kind)
    # Windows 1-12: 96 < 100 requests, paused; window 13: 104 requests, 52 labels -> gates judged.
    # Stable has no labels, so the accuracy gate is still inconclusive: the step waits on.
    assert kinds == ["pause"] * 13 and status.evidence[CAND].requests == 104
    labelled = vs(requests=742, errors=7, labelled=60, correct=54)
    action, status = decide(policy, status, window(thin, labelled), T0 + 15 * 14)
    # 112 requests, 0 errors; labels 56 (all correct) vs 60 (0.90): every gate passes -> 5 %.
    assert (action.kind, status.traffic[CAND]) == ("set_traffic", 5), action.reason


@pytest.mark.parametrize(
    ("before", "before_buckets", "w", "w_buckets", "p99_ms", "keeps_buckets"),
    [
        # 990 requests <= 10 ms, then 10 in (10, 100] ms: 1 % slow of 1000, rank 0.99 x 1000 = 990
        # falls at the 10 ms bound. The second window alone has p99 ~100 ms.
        pytest.param(
            vs(requests=990, errors=0, p99_ms=10.0),
            {"0.01": 990.0, "0.1": 990.0, "+Inf": 990.0},
            vs(requests=10, errors=0, p99_ms=99.1),
            {"0.01": 0.0, "0.1": 10.0, "+Inf": 10.0},
            10.0,
            True,
            id="buckets-give-the-p99-of-the-union",
        ),
        # No histograms: the worst window p99, max(40, 70) = 70, an upper bound on the union's.
        pytest.param(vs(requests=60), None, vs(requests=50, p99_ms=70.0), None, 70.0, False, id="worst-window"),
        # Histograms so far, none now: back to the worst window (the earlier p99 was exact).
        pytest.param(
            vs(requests=60), {"0.05": 60.0, "+Inf": 60.0}, vs(requests=50, p99_ms=70.0), None, 70.0, False,
            id="missing-buckets-fall-back-to-worst",
        ),
        pytest.param(
            vs(requests=60), None, vs(requests=50, p99_ms=float("nan")), None, None, False,
            id="nan-window-makes-p99-unknown",
        ),
        # 0 requests observed: nothing to say about latency, the earlier p99 stands.
        pytest.param(vs(requests=60), None, vs(requests=0, errors=0, p99_ms=None), None, 40.0, False, id="empty-window"),
        pytest.param(None, None, vs(requests=50, p99_ms=70.0), None, 70.0, False, id="first-window"),
    ],
)
def test_latency_accumulation(
    before: VersionStats | None,
    before_buckets: dict | None,
    w: VersionStats,
    w_buckets: dict | None,
    p99_ms: float | None,
    keeps_buckets: bool,
) -> None:
    stats, buckets = accumulate(before, before_buckets, w, w_buckets)
    assert stats.requests == (before.requests if before else 0) + w.requests
    assert stats.p99_ms == (None if p99_ms is None else pytest.approx(p99_ms))
    assert (buckets is not None) is keeps_buckets


def test_bucket_p99_through_decide() -> None:
    """The same two windows through decide(): buckets pass the 1.5x gate, worst-window p99 would not."""
    slow = {"0.01": 0.0, "0.1": 60.0, "+Inf": 60.0}
    fast = {"0.01": 5940.0, "0.1": 5940.0, "+Inf": 5940.0}
    status = at(
        CANARY, 5, step=1, evidence={STABLE: vs(requests=1000, p99_ms=10.0), CAND: vs(requests=5940, p99_ms=10.0)},
        evidence_buckets={CAND: fast, STABLE: {"0.01": 1000.0, "+Inf": 1000.0}}, evidence_started_at=T0 - 60,
    )
    # Candidate: 5940 fast + 60 slow = 6000, 1 % slow: rank 0.99 x 6000 = 5940 sits at the 10 ms bound.
    # Stable: 2000 fast, rank 1980 -> 10 x 1980/2000 = 9.9 ms. 10 / 9.9 = 1.01x <= 1.5x; the worst
    # window p99 would have been 99.1 / 9.9 = 10x and failed a candidate that is 1 % slow.
    w = MetricsWindow(
        versions={STABLE: vs(requests=1000, p99_ms=10.0), CAND: vs(requests=60, p99_ms=99.1)},
        latency_buckets={STABLE: {"0.01": 1000.0, "+Inf": 1000.0}, CAND: slow},
    )
    action, new = decide(CANARY, status, w, T0 + 60)
    assert action.kind == "set_traffic" and "p99 10.0 ms / stable 9.9 ms = 1.01x" in action.reason
    assert new.evidence == {} and new.evidence_buckets == {}


def test_canary_promotes_through_all_steps() -> None:
    status = start_status(CANARY, STABLE, CAND)
    seen = []
    # Start at T0, then one passing window every 60 s: 1 -> 5 -> 25 -> 50 -> promote (100).
    for i in range(6):
        action, status = decide(CANARY, status, window(), T0 + 60 * i)
        seen.append((action.kind, status.traffic[CAND]))
    assert seen == [
        ("set_traffic", 1),
        ("set_traffic", 5),
        ("set_traffic", 25),
        ("set_traffic", 50),
        ("promote", 100),
        ("none", 100),
    ]
    assert status.phase == "promoted" and status.step == 3


def test_missing_metrics_never_promote_over_a_whole_run() -> None:
    _, status = decide(CANARY, start_status(CANARY, STABLE, CAND), window(), T0)
    kinds = []
    for i in range(1, 6):
        action, status = decide(CANARY, status, MetricsWindow(), T0 + 60 * i)
        kinds.append(action.kind)
        assert status.traffic[CAND] <= 1
    # Windows 1 and 2 pause; window 3 reaches max_inconclusive = 3 and rolls back; then it stays over.
    assert kinds == ["pause", "pause", "rollback", "none", "none"]


# A candidate window with no usable p99 (None or NaN) or too few requests, anything else random.
_unusable_candidate = st.one_of(
    st.builds(
        lambda r, e, p: vs(requests=r, errors=min(e, r), p99_ms=p),
        st.integers(0, 10_000),
        st.integers(0, 10),
        st.sampled_from([None, float("nan")]),
    ),
    st.builds(lambda r, p: vs(requests=r, errors=0, p99_ms=p), st.integers(0, 99), st.floats(0, 100)),
)


@settings(max_examples=150, deadline=None)
@given(
    candidate=_unusable_candidate,
    weight=st.sampled_from([1.0, 5.0, 25.0, 50.0]),
    inconclusive=st.integers(0, 2),
    elapsed=st.floats(0, 10_000),
)
def test_unusable_metrics_never_advance(
    candidate: VersionStats, weight: float, inconclusive: int, elapsed: float
) -> None:
    status = at(CANARY, weight, step=CANARY.step_weights.index(weight), consecutive_inconclusive=inconclusive)
    action, new = decide(CANARY, status, window(candidate), T0 + elapsed)
    assert action.kind not in ("set_traffic", "promote")
    assert new.traffic[CAND] <= weight


@pytest.mark.parametrize(
    ("steps", "current", "expected"),
    [
        pytest.param([1, 5, 25, 50, 100], 0, 1, id="from-zero"),
        pytest.param([1, 5, 25, 50, 100], 5, 25, id="mid"),
        pytest.param([1, 5, 25, 50, 100], 50, 100, id="to-last"),
        pytest.param([1, 5, 25, 50, 100], 100, None, id="at-last"),
        # The policy was edited mid-rollout: 3 % is off the grid, the next step above it is 5.
        pytest.param([1, 5, 25, 50, 100], 3, 5, id="off-grid"),
    ],
)
def test_next_step_weight(steps: list[float], current: float, expected: float | None) -> None:
    assert next_step_weight(steps, current) == expected


# -- commands and terminal phases -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "command", "expected", "manual_pause"),
    [
        pytest.param(at(CANARY, 5), "promote", ("promote", "promoted", 100), False, id="promote"),
        pytest.param(at(CANARY, 5), "rollback", ("rollback", "rolled_back", 0), False, id="rollback"),
        pytest.param(at(CANARY, 5), "abort", ("rollback", "aborted", 0), False, id="abort"),
        pytest.param(at(CANARY, 5), "pause", ("pause", "paused", 5), True, id="pause"),
        pytest.param(at(CANARY, 5), "resume", ("hold", "progressing", 5), False, id="resume-not-paused"),
        pytest.param(
            at(CANARY, 5, phase="paused", manual_pause=True),
            "resume",
            ("hold", "progressing", 5),
            False,
            id="resume",
        ),
        pytest.param(
            at(CANARY, 5, phase="paused", manual_pause=True),
            None,
            ("hold", "paused", 5),
            True,
            id="paused-does-not-advance",
        ),
        pytest.param(
            start_status(CANARY, STABLE, CAND).model_copy(update={"phase": "paused", "manual_pause": True}),
            "resume",
            ("hold", "pending", 0),
            False,
            id="resume-before-start-is-pending",
        ),
        pytest.param(at(AB, 50), "promote", ("promote", "promoted", 100), False, id="ab-promote"),
        pytest.param(
            at(BLUE_GREEN, 0, step=0),
            "promote",
            ("set_traffic", "progressing", 100),
            False,
            id="blue-green-promote-switches",
        ),
        pytest.param(
            at(BLUE_GREEN, 100, step=1),
            "promote",
            ("scale_down", "promoted", 100),
            False,
            id="blue-green-promote-ends-window",
        ),
        pytest.param(
            at(BLUE_GREEN, 100, step=1),
            "rollback",
            ("rollback", "rolled_back", 0),
            False,
            id="blue-green-rollback-in-window",
        ),
        pytest.param(at(SHADOW, 0), "promote", ("promote", "promoted", 0), False, id="shadow-promote"),
    ],
)
def test_commands_act_at_once(
    status: RolloutStatus, command: str | None, expected: tuple, manual_pause: bool
) -> None:
    policy = {"canary": CANARY, "ab": AB, "blue_green": BLUE_GREEN, "shadow": SHADOW}[status.strategy]
    # 70 s: past the canary interval, so a paused rollout would advance if pause were ignored.
    new = run(policy, status, window(command=command), T0 + 70, expected)
    assert new.manual_pause is manual_pause


@pytest.mark.parametrize("phase", ["promoted", "rolled_back", "aborted"])
@pytest.mark.parametrize("command", [None, "promote", "rollback", "resume", "abort"])
def test_terminal_phases_stay_terminal(phase: str, command: str | None) -> None:
    status = at(CANARY, 5, phase=phase)
    action, new = decide(CANARY, status, window(command=command), T0 + 10_000)
    assert action.kind == "none" and action.traffic is None
    assert new == status


# -- blue-green ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "w", "now", "expected"),
    [
        pytest.param(
            start_status(BLUE_GREEN, STABLE, CAND), window(), T0, ("hold", "progressing", 0), id="start"
        ),
        pytest.param(
            at(BLUE_GREEN, 0, step=0),
            window(smoke_ok=False),
            T0 + 10,
            ("rollback", "rolled_back", 0),
            id="smoke-fail-rolls-back",
        ),
        pytest.param(
            at(BLUE_GREEN, 0, step=0),
            window(smoke_ok=True),
            T0 + 10,
            ("set_traffic", "progressing", 100),
            id="smoke-ok-switches",
        ),
        # 60 s < 120 s smoke timeout: wait.
        pytest.param(
            at(BLUE_GREEN, 0, step=0), window(), T0 + 60, ("hold", "progressing", 0), id="awaiting-smoke"
        ),
        # 120 s >= 120 s with no smoke result: missing never promotes.
        pytest.param(
            at(BLUE_GREEN, 0, step=0),
            window(),
            T0 + 120,
            ("rollback", "rolled_back", 0),
            id="smoke-timeout-rolls-back",
        ),
        # Switched at T0; 200 s < 300 s rollback window: old colour stays warm.
        pytest.param(
            at(BLUE_GREEN, 100, step=1), window(), T0 + 200, ("hold", "progressing", 100), id="warm"
        ),
        pytest.param(
            at(BLUE_GREEN, 100, step=1),
            window(),
            T0 + 300,
            ("scale_down", "promoted", 100),
            id="scale-down-after-window",
        ),
        pytest.param(
            at(BLUE_GREEN, 100, step=1),
            window(smoke_ok=False),
            T0 + 200,
            ("rollback", "rolled_back", 0),
            id="smoke-fail-after-switch",
        ),
    ],
)
def test_blue_green(status: RolloutStatus, w: MetricsWindow, now: float, expected: tuple) -> None:
    run(BLUE_GREEN, status, w, now, expected)


def test_blue_green_switch_then_scale_down_after_the_window() -> None:
    status = run(BLUE_GREEN, start_status(BLUE_GREEN, STABLE, CAND), window(), T0, ("hold", "progressing", 0))
    status = run(BLUE_GREEN, status, window(smoke_ok=True), T0 + 30, ("set_traffic", "progressing", 100))
    # The rollback window counts from the switch (T0 + 30): 30 + 299 is still inside it, 30 + 300 is not.
    status = run(BLUE_GREEN, status, window(), T0 + 329, ("hold", "progressing", 100))
    action, status = decide(BLUE_GREEN, status, window(), T0 + 330)
    assert (action.kind, action.version, status.phase) == ("scale_down", STABLE, "promoted")


# -- A/B -------------------------------------------------------------------------------------------


def outcomes(conversions: int, trials: int) -> VersionStats:
    return VersionStats(requests=trials, trials=trials, conversions=conversions)


@pytest.mark.parametrize(
    ("status", "w", "now", "expected", "winner"),
    [
        pytest.param(
            start_status(AB, STABLE, CAND),
            window(),
            T0,
            ("set_traffic", "progressing", 50),
            None,
            id="start-splits-50-50",
        ),
        # 110/1000 vs 100/1000: p = 1 (see test_rollout_stats), keep collecting.
        pytest.param(
            at(AB, 50),
            window(outcomes(110, 1000), outcomes(100, 1000)),
            T0,
            ("hold", "progressing", 50),
            None,
            id="no-winner-yet",
        ),
        # 150/1000 vs 100/1000: p = 0.0181 < 0.05, candidate better.
        pytest.param(
            at(AB, 50),
            window(outcomes(150, 1000), outcomes(100, 1000)),
            T0,
            ("promote_winner", "promoted", 100),
            CAND,
            id="candidate-wins",
        ),
        pytest.param(
            at(AB, 50),
            window(outcomes(100, 1000), outcomes(150, 1000)),
            T0,
            ("promote_winner", "rolled_back", 0),
            STABLE,
            id="stable-wins",
        ),
        # Started at T0 - 500; T0 + 3100 - (T0 - 500) = 3600 s = max_duration_s, still no winner.
        pytest.param(
            at(AB, 50),
            window(outcomes(110, 1000), outcomes(100, 1000)),
            T0 + 3100,
            ("rollback", "rolled_back", 0),
            None,
            id="no-winner-at-deadline",
        ),
        # 99 trials < min_trials 100 even though 99/99 vs 0/99 looks decisive.
        pytest.param(
            at(AB, 50),
            window(outcomes(99, 99), outcomes(0, 99)),
            T0,
            ("hold", "progressing", 50),
            None,
            id="too-few-trials",
        ),
    ],
)
def test_ab(status: RolloutStatus, w: MetricsWindow, now: float, expected: tuple, winner: str | None) -> None:
    action, new = decide(AB, status, w, now)
    assert (action.kind, new.phase, new.traffic[CAND]) == expected, action.reason
    assert (new.ab.winner if new.ab else None) == winner
    if winner is not None:
        assert action.version == winner


def test_ab_sums_windows_since_the_start() -> None:
    # Totals 60/600 vs 90/600, plus a window of 40/400 vs 60/400 = 100/1000 vs 150/1000: significant.
    status = at(AB, 50, totals={STABLE: outcomes(60, 600), CAND: outcomes(90, 600)})
    action, new = decide(AB, status, window(outcomes(60, 400), outcomes(40, 400)), T0 + 10)
    assert (new.totals[STABLE].conversions, new.totals[STABLE].trials) == (100, 1000)
    assert (new.totals[CAND].conversions, new.totals[CAND].trials) == (150, 1000)
    assert action.kind == "promote_winner" and new.ab is not None and math.isclose(new.ab.effect, 0.05)
    assert new.ab.ci_low > 0


# -- shadow ----------------------------------------------------------------------------------------

SHADOW_STABLE = vs(requests=5000, errors=50, p99_ms=40.0)


def shadow(**fields: object) -> VersionStats:
    """500 copies, 1 % errors, p99 60 ms, 490/500 = 98 % agreement."""
    return vs(**{"requests": 500, "errors": 5, "p99_ms": 60.0, "compared": 500, "agreed": 490, **fields})


@pytest.mark.parametrize(
    ("status", "w", "now", "expected"),
    [
        pytest.param(
            start_status(SHADOW, STABLE, CAND), window(), T0, ("hold", "progressing", 0), id="start"
        ),
        # 300 compared < 500.
        pytest.param(
            at(SHADOW, 0),
            window(shadow(compared=300, agreed=300), SHADOW_STABLE),
            T0,
            ("hold", "progressing", 0),
            id="collecting",
        ),
        # 0.98 >= 0.95; 1 % vs 1 % errors; 60 / 40 = 1.5x <= 2x.
        pytest.param(
            at(SHADOW, 0),
            window(shadow(), SHADOW_STABLE),
            T0,
            ("promote", "promoted", 0),
            id="ready-to-canary",
        ),
        # 450/500 = 0.90 < 0.95.
        pytest.param(
            at(SHADOW, 0),
            window(shadow(agreed=450), SHADOW_STABLE),
            T0,
            ("rollback", "rolled_back", 0),
            id="low-agreement",
        ),
        # 50/500 = 10 % vs 1 %: +9 points > +1.
        pytest.param(
            at(SHADOW, 0),
            window(shadow(errors=50), SHADOW_STABLE),
            T0,
            ("rollback", "rolled_back", 0),
            id="high-errors",
        ),
        pytest.param(
            at(SHADOW, 0),
            window(shadow(p99_ms=None), SHADOW_STABLE),
            T0,
            ("hold", "progressing", 0),
            id="p99-missing-holds",
        ),
        # T0 + 3100 - (T0 - 500) = 3600 s = max_duration_s with still no usable p99.
        pytest.param(
            at(SHADOW, 0),
            window(shadow(p99_ms=None), SHADOW_STABLE),
            T0 + 3100,
            ("rollback", "rolled_back", 0),
            id="no-verdict-by-deadline",
        ),
    ],
)
def test_shadow(status: RolloutStatus, w: MetricsWindow, now: float, expected: tuple) -> None:
    action, new = decide(SHADOW, status, w, now)
    assert (action.kind, new.phase, new.traffic[CAND]) == expected, action.reason
    if action.kind == "promote":
        # Shadow traffic is never served: promotion means "start a canary", not "send users to it".
        assert action.traffic is None and action.version == CAND


# -- restart: the status is all the state there is ----------------------------------------------------


def _after(policy: RolloutPolicy, *steps: tuple[MetricsWindow, float]) -> RolloutStatus:
    status = start_status(policy, STABLE, CAND)
    for w, now in steps:
        _, status = decide(policy, status, w, now)
    return status


@pytest.mark.parametrize(
    ("policy", "status", "w", "now"),
    [
        pytest.param(
            CANARY,
            _after(CANARY, (window(), T0), (window(), T0 + 60)),
            window(),
            T0 + 120,
            id="canary-mid-rollout",
        ),
        pytest.param(
            CANARY,
            _after(CANARY, (window(), T0), (MetricsWindow(), T0 + 60)),
            window(vs(p99_ms=None)),
            T0 + 120,
            id="canary-paused",
        ),
        pytest.param(
            BLUE_GREEN,
            _after(BLUE_GREEN, (window(), T0), (window(smoke_ok=True), T0 + 1 / 3)),
            window(),
            T0 + 300 + 1 / 3,
            id="blue-green-switched",
        ),
        pytest.param(
            AB,
            _after(AB, (window(), T0), (window(outcomes(107, 997), outcomes(101, 1003)), T0 + 7)),
            window(outcomes(41, 311), outcomes(29, 307)),
            T0 + 14,
            id="ab-running",
        ),
        pytest.param(
            SHADOW,
            _after(SHADOW, (window(), T0), (window(shadow(compared=333, agreed=331), HEALTHY), T0 + 5)),
            window(shadow(compared=200, agreed=190), HEALTHY),
            T0 + 10,
            id="shadow-collecting",
        ),
    ],
)
def test_restart_from_json_gives_the_same_decision(
    policy: RolloutPolicy, status: RolloutStatus, w: MetricsWindow, now: float
) -> None:
    assert status.phase not in ("pending", "promoted", "rolled_back")
    restored = RolloutStatus.model_validate_json(status.model_dump_json())
    assert restored == status
    restored_policy = parse_policy(policy.model_dump_json())
    assert restored_policy == policy
    assert decide(restored_policy, restored, w, now) == decide(policy, status, w, now)


def test_blue_green_resume_restarts_the_rollback_window() -> None:
    # Paused at T0 + 10 inside the 300 s window, resumed at T0 + 1000: a full 300 s from the resume.
    _, status = decide(BLUE_GREEN, at(BLUE_GREEN, 100, step=1), window(command="pause"), T0 + 10)
    _, status = decide(BLUE_GREEN, status, window(command="resume"), T0 + 1000)
    run(BLUE_GREEN, status, window(), T0 + 1299, ("hold", "progressing", 100))
    run(BLUE_GREEN, status, window(), T0 + 1300, ("scale_down", "promoted", 100))


# -- boundaries and validation -------------------------------------------------------------------------

# The decision code must run anywhere and answer the same: no clock, no randomness, no I/O.
FORBIDDEN_IMPORTS = {
    "ray",
    "fastapi",
    "starlette",
    "httpx",
    "requests",
    "aiohttp",
    "urllib",
    "sqlite3",
    "time",
    "datetime",
    "random",
    "socket",
    "os",
    "subprocess",
}


@pytest.mark.parametrize("module", ["__init__", "decide", "policy", "stats", "sticky"])
def test_rollout_modules_import_no_io_clock_or_randomness(module: str) -> None:
    source = (Path(__file__).resolve().parents[2] / "serving" / "rollout" / f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported, "the scan found no imports at all: it is not reading the module"
    assert not {name.split(".")[0] for name in imported} & FORBIDDEN_IMPORTS, imported


# -- validation ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "quoted"),
    [
        pytest.param([5, 1, 100], "strictly increasing, got [5.0, 1.0, 100.0]", id="not-increasing"),
        pytest.param([1, 5, 5, 100], "strictly increasing, got [1.0, 5.0, 5.0, 100.0]", id="repeated"),
        pytest.param([1, 5, 50], "must end at 100, got [1.0, 5.0, 50.0] (last 50.0)", id="not-ending-at-100"),
        pytest.param([0, 50, 100], "each be in (0, 100], got [0.0, 50.0, 100.0]", id="zero-step"),
        pytest.param([100], "at least 2 items", id="no-canary-step"),
    ],
)
def test_step_weights_are_validated_with_values_quoted(steps: list[float], quoted: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(quoted)):
        CanaryPolicy(step_weights=steps)


def test_max_step_must_hold_one_window() -> None:
    with pytest.raises(ValidationError, match=re.escape("max_step_s (30.0) must be >= step_interval_s (60.0)")):
        CanaryPolicy(step_interval_s=60, max_step_s=30)
    assert CanaryPolicy(step_interval_s=60, max_step_s=60).max_step_s == 60


def test_policy_union_and_status_validation() -> None:
    assert isinstance(parse_policy({"strategy": "ab", "salt": "s"}), ABPolicy)
    with pytest.raises(ValidationError, match="'canary', 'blue_green', 'ab', 'shadow'"):
        parse_policy({"strategy": "linear"})
    with pytest.raises(
        ValidationError, match=re.escape("candidate_version ('1') must differ from stable_version ('1')")
    ):
        start_status(CANARY, "1", "1")
    with pytest.raises(
        ValueError, match=re.escape("status.strategy ('ab') does not match policy.strategy ('canary')")
    ):
        decide(CANARY, at(AB, 50), window(), T0)
    with pytest.raises(ValueError, match="now must be finite"):
        decide(CANARY, at(CANARY, 5), window(), float("nan"))


# -- gates from model cards ----------------------------------------------------------------------------


def card(version: str, accuracy: float, p99_b1: float | None, model: str = "sentiment") -> ModelCard:
    latency = [LatencyStats(batch_size=32, p50_ms=100, p99_ms=150, runs=50)]
    if p99_b1 is not None:
        latency.append(LatencyStats(batch_size=1, p50_ms=p99_b1 / 2, p99_ms=p99_b1, runs=200))
    return ModelCard(
        model=model,
        version=version,
        kind="student",
        labels=["negative", "neutral", "positive"],
        max_seq_len=128,
        accuracy=accuracy,
        eval_examples=1000,
        latency=latency,
        parameters=1000,
        bytes=4000,
        created_at="2025-01-01T00:00:00Z",
        lineage=Lineage(
            weights_sha256="0" * 64,
            code_commit="abc",
            code_dirty=False,
            data_fingerprint="d",
            config_hash="c",
        ),
    )


@pytest.mark.parametrize(
    ("candidate", "stable", "overrides", "expected"),
    [
        # max(12/40 = 0.3, 1) * 1.5 = 1.5x; accuracy gap 0.90 - 0.87 = 0.03 + 0.02 headroom = 0.05.
        pytest.param(
            card("2", 0.87, 12.0),
            card("1", 0.90, 40.0),
            None,
            {"max_p99_ratio": 1.5, "max_p99_ms": None, "max_accuracy_drop": 0.05},
            id="faster-student",
        ),
        # 60/40 = 1.5 * 1.5 = 2.25x; candidate more accurate: max(-0.01, 0) + 0.02 = 0.02.
        pytest.param(
            card("2", 0.91, 60.0),
            card("1", 0.90, 40.0),
            None,
            {"max_p99_ratio": 2.25, "max_p99_ms": None, "max_accuracy_drop": 0.02},
            id="slower-candidate",
        ),
        # No stable card: absolute 12 * 1.5 + 20 ms overhead = 38 ms; accuracy headroom alone.
        pytest.param(
            card("2", 0.87, 12.0),
            None,
            None,
            {"max_p99_ratio": None, "max_p99_ms": 38.0, "max_accuracy_drop": 0.02},
            id="no-stable-card",
        ),
        pytest.param(
            card("2", 0.87, 12.0),
            card("1", 0.90, 40.0),
            {"max_p99_ratio": 3.0, "min_requests": 500},
            {"max_p99_ratio": 3.0, "min_requests": 500, "max_accuracy_drop": 0.05},
            id="overrides-win",
        ),
    ],
)
def test_gates_from_card(
    candidate: ModelCard, stable: ModelCard | None, overrides: dict | None, expected: dict
) -> None:
    gates = gates_from_card(candidate, stable, overrides=overrides)
    for field, value in expected.items():
        got = getattr(gates, field)
        assert got == value if value is None else math.isclose(got, value), (field, got)


@pytest.mark.parametrize(
    ("candidate", "stable", "kwargs", "error", "quoted"),
    [
        pytest.param(
            card("2", 0.9, None),
            None,
            {},
            ValueError,
            "no batch-1 latency (measured batch sizes [32])",
            id="no-batch-1",
        ),
        pytest.param(
            card("2", 0.9, 10.0),
            card("1", 0.9, 10.0, model="topic"),
            {},
            ValueError,
            "same model and labels: candidate sentiment",
            id="other-model",
        ),
        pytest.param(
            card("2", 0.9, 10.0),
            None,
            {"latency_headroom": 0.5},
            ValueError,
            "got 0.5, 0.02, 20.0",
            id="headroom-below-1",
        ),
        pytest.param(
            card("2", 0.9, 10.0),
            None,
            {"overrides": {"max_p99_ratio": 0.5}},
            ValidationError,
            "input_value=0.5",
            id="bad-override",
        ),
        pytest.param(
            card("2", 0.9, 10.0),
            None,
            {"overrides": {"max_p99": 1}},
            ValidationError,
            "max_p99",
            id="unknown-override",
        ),
    ],
)
def test_gates_from_card_errors(
    candidate: ModelCard, stable: ModelCard | None, kwargs: dict, error: type, quoted: str
) -> None:
    with pytest.raises(error, match=re.escape(quoted)):
        gates_from_card(candidate, stable, **kwargs)
