"""Pure pieces of the student recipe: Pareto selection, ratio arithmetic, logit cache, report."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from distill.cache import LogitCache, cache_key
from distill.report import goal_summary, markdown_table, pareto_plot
from distill.student import accuracy_ratio, fastest, mean_std, speedups
from distill.sweep import Row, pareto_front
from distilserve.core.card import LatencyStats


def lat(b1: float, b32: float | None = None) -> list[LatencyStats]:
    out = [LatencyStats(batch_size=1, p50_ms=b1, p99_ms=b1 * 2, runs=10)]
    if b32 is not None:
        out.append(LatencyStats(batch_size=32, p50_ms=b32, p99_ms=b32 * 2, runs=10))
    return out


# (id, accuracy, latency ms): higher accuracy and lower latency are better.
@pytest.mark.parametrize(
    ("points", "front"),
    [
        pytest.param([("t", 0.85, 15.0)], ["t"], id="single-point"),
        # s is faster (5 < 15) but less accurate: neither dominates the other.
        pytest.param([("t", 0.85, 15.0), ("s", 0.82, 5.0)], ["t", "s"], id="trade-off-both-stay"),
        # s2 is as fast as s1 (5 = 5) and less accurate (0.80 < 0.82): dominated.
        pytest.param([("t", 0.85, 15.0), ("s1", 0.82, 5.0), ("s2", 0.80, 5.0)], ["t", "s1"], id="equal-latency-lower-acc"),
        # s is slower (20 > 15) and less accurate than t: dominated.
        pytest.param([("t", 0.85, 15.0), ("s", 0.80, 20.0)], ["t"], id="worse-on-both"),
        # s is as accurate (0.85 = 0.85) and faster (3 < 15): t is dominated.
        pytest.param([("t", 0.85, 15.0), ("s", 0.85, 3.0)], ["s"], id="student-dominates-teacher"),
        # exact duplicates are not strictly better than each other: both stay.
        pytest.param([("a", 0.8, 2.0), ("b", 0.8, 2.0)], ["a", "b"], id="duplicates-both-stay"),
        # NaN accuracy never reaches the front, and does not knock others off.
        pytest.param([("t", 0.85, 15.0), ("s", math.nan, 1.0)], ["t"], id="nan-excluded"),
        # three-step staircase + one point inside it (0.81 @ 6 is beaten by 0.82 @ 5).
        pytest.param(
            [("t", 0.85, 15.0), ("l2", 0.82, 5.0), ("l1", 0.71, 2.5), ("x", 0.81, 6.0)],
            ["t", "l2", "l1"], id="staircase",
        ),
        pytest.param([], [], id="empty"),
    ],
)
def test_pareto_front(points: list[tuple[str, float, float]], front: list[str]) -> None:
    assert pareto_front(points) == front


@pytest.mark.parametrize(
    ("teacher", "student", "expected"),
    [
        # 15 / 5 = 3.0 at batch 1; 278 / 93 = 2.989... at batch 32.
        pytest.param(lat(15.0, 278.0), lat(5.0, 93.0), {1: 3.0, 32: 278.0 / 93.0}, id="both-batches"),
        # the student was not measured at 32: only batch 1 is compared.
        pytest.param(lat(15.0, 278.0), lat(1.5), {1: 10.0}, id="missing-batch-skipped"),
        # a slower student gives a ratio below one (2 / 4 = 0.5).
        pytest.param(lat(2.0), lat(4.0), {1: 0.5}, id="slower-student"),
    ],
)
def test_speedups(teacher: list[LatencyStats], student: list[LatencyStats], expected: dict[int, float]) -> None:
    got = speedups(teacher, student)
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, rel=1e-12)


@pytest.mark.parametrize(
    ("student", "teacher", "expected"),
    [
        pytest.param(0.822, 0.853, 0.822 / 0.853, id="below-teacher"),  # ~0.9637
        pytest.param(0.9, 0.9, 1.0, id="equal"),
        pytest.param(0.5, 0.0, math.nan, id="teacher-zero-is-nan"),
    ],
)
def test_accuracy_ratio(student: float, teacher: float, expected: float) -> None:
    got = accuracy_ratio(student, teacher)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_mean_std_is_sample_std() -> None:
    # values 0.80, 0.82, 0.84: mean 0.82; squared deviations 4e-4 + 0 + 4e-4 over n-1 = 2 -> var 4e-4, std 0.02.
    mean, std = mean_std([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82)
    assert std == pytest.approx(0.02)
    assert mean_std([0.7]) == (0.7, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        mean_std([])


def test_fastest_keeps_lowest_p50_per_batch_size() -> None:
    first, second = lat(3.0, 50.0), lat(2.0, 60.0)
    best = fastest(first, second)
    assert [(s.batch_size, s.p50_ms) for s in best] == [(1, 2.0), (32, 50.0)]


# ---------------------------------------------------------------- cache


def test_cache_key_depends_on_every_input() -> None:
    base = cache_key("w" * 64, "sha256:data", 64, ["a b", "c"])
    assert base == cache_key("w" * 64, "sha256:data", 64, ["a b", "c"])
    variants = [
        cache_key("x" * 64, "sha256:data", 64, ["a b", "c"]),  # other teacher weights
        cache_key("w" * 64, "sha256:other", 64, ["a b", "c"]),  # other data
        cache_key("w" * 64, "sha256:data", 32, ["a b", "c"]),  # other truncation
        cache_key("w" * 64, "sha256:data", 64, ["c", "a b"]),  # other row order
        cache_key("w" * 64, "sha256:data", 64, ["a", "b c"]),  # same characters, other split into rows
        cache_key("w" * 64, "sha256:data", 64, ["a b"]),  # a prefix of the rows
    ]
    assert len({base, *variants}) == 1 + len(variants)


def test_cache_round_trip_and_miss_then_hit(tmp_path: Path) -> None:
    cache = LogitCache(tmp_path / "c")
    logits = np.arange(12, dtype=np.float64).reshape(4, 3) / 7.0
    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return logits

    first, hit1 = cache.get_or_compute("k", 4, compute)
    second, hit2 = cache.get_or_compute("k", 4, compute)
    assert (hit1, hit2, len(calls)) == (False, True, 1)
    assert second.dtype == np.float32
    np.testing.assert_array_equal(second, logits.astype(np.float32))
    np.testing.assert_array_equal(first, second)
    assert not list((tmp_path / "c").glob("*.tmp-*")), "no temp file left behind"


def test_cache_with_wrong_row_count_is_recomputed(tmp_path: Path) -> None:
    cache = LogitCache(tmp_path)
    cache.save("k", np.zeros((2, 3), dtype=np.float32))
    got, hit = cache.get_or_compute("k", 3, lambda: np.ones((3, 3)))
    assert not hit and got.shape == (3, 3)
    with pytest.raises(ValueError, match="expected 5"):
        cache.get_or_compute("other", 5, lambda: np.ones((4, 3)))


# ---------------------------------------------------------------- report


def _rows() -> list[Row]:
    return [
        Row(name="teacher v1", kind="teacher", accuracy=0.87, p50_b1=18.0, p99_b1=30.0, p50_b32=380.0,
            p99_b32=500.0, speedup_b1=1.0, accuracy_ratio=1.0, pareto=True, version="1"),
        Row(name="tfidf+logreg", kind="baseline", accuracy=0.83, p50_b1=0.6, p99_b1=0.9),
        Row(name="l2", kind="student", accuracy=0.84, accuracy_std=0.004, seeds=3, p50_b1=6.0, p99_b1=9.0,
            speedup_b1=3.0, accuracy_ratio=0.84 / 0.87, pareto=True, version="2"),
        Row(name="tiny", kind="student", accuracy=0.78, p50_b1=1.2, p99_b1=2.0, speedup_b1=15.0,
            accuracy_ratio=0.78 / 0.87, pareto=True),
    ]


def test_markdown_table_has_one_line_per_row() -> None:
    text = markdown_table(_rows())
    lines = text.strip().splitlines()
    assert len(lines) == 2 + 4
    assert "0.8400 ± 0.0040 (n=3)" in text
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_goal_summary_states_the_gap() -> None:
    # tiny: 0.78 / 0.87 = 89.66% -> 97 - 89.66 = 7.3 points short; 15x meets the speed goal.
    # l2: 96.55% -> 0.4 points short; 10 / 3 = 3.33x more speed needed.
    text = goal_summary(_rows())
    assert "not reached" in text
    assert "tiny, 89.7% at 15.00x: meets the speed goal, 7.3 points short on accuracy" in text
    assert "l2, 96.6% at 3.00x: needs 3.33x more speed, 0.4 points short on accuracy" in text
    reached = goal_summary(_rows(), min_ratio=0.89)
    assert reached.startswith("goal reached by tiny")


def test_pareto_plot_writes_a_png(tmp_path: Path) -> None:
    path = pareto_plot(_rows(), tmp_path / "sub" / "p.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
