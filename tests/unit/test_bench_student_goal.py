"""scripts/bench_student_goal.py's pure parts: the rotation of the order and the summary against the goal."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location(
    "bench_student_goal", Path(__file__).resolve().parents[2] / "scripts" / "bench_student_goal.py")
goal = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(goal)  # type: ignore[union-attr]


@pytest.mark.parametrize(("k", "order"), [(0, ["1", "2", "3"]), (1, ["2", "3", "1"]), (2, ["3", "1", "2"]),
                                          (3, ["1", "2", "3"])])
def test_rotated(k: int, order: list[str]) -> None:
    assert goal.rotated(["1", "2", "3"], k) == order


@pytest.mark.parametrize(
    ("acc", "b1", "met"),
    [
        (0.85, [1.0, 1.1, 0.9], True),    # 97.7% accuracy; speed-ups 10, 9.1, 11.1 -> median 10
        (0.84, [1.0, 1.0, 1.0], False),   # 96.6% accuracy: too inaccurate however fast
        (0.86, [1.0, 1.2, 1.3], False),   # fast enough once (10x), median 8.3x
    ],
    ids=["met-at-the-median", "accuracy-short", "speed-short-at-the-median"],
)
def test_summary_judges_the_median_speedup_and_the_accuracy_ratio(acc: float, b1: list[float], met: bool) -> None:
    out = goal.summarise("1", {"1": 0.87, "2": acc}, {"1": [10.0, 10.0, 10.0], "2": b1},
                         {"1": [300.0] * 3, "2": [20.0] * 3})
    assert out["2"]["goal_met"] is met
    assert out["1"]["speedup_b1"]["median"] == 1.0 and out["2"]["speedup_b32"]["median"] == 15.0
    assert out["2"]["accuracy_ratio"] == round(acc / 0.87, 4)
