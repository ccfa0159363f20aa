"""The one percentile (distilserve.core.stats): nearest rank, used by cards, check, benchmarks."""

from __future__ import annotations

import math

import pytest

from distilserve.core.stats import percentile


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([5.0], 99, 5.0),
        ([1.0, 2.0, 3.0, 4.0], 50, 2.0),  # rank ceil(0.5*4)=2 -> 2.0
        (list(map(float, range(1, 101))), 99, 99.0),  # rank ceil(0.99*100)=99
        (list(map(float, range(1, 51))), 99, 50.0),  # rank ceil(0.99*50)=50: the slowest request
        ([3.0, 1.0, 2.0], 0, 1.0),  # rank max(1, 0)=1 -> the smallest
        ([3.0, 1.0, 2.0], 100, 3.0),
    ],
    ids=["single", "p50-of-4", "p99-of-100", "p99-of-50", "p0", "p100"],
)
def test_percentile_nearest_rank(values: list[float], q: float, expected: float) -> None:
    assert percentile(values, q) == expected


def test_percentile_of_nothing_is_nan_and_q_is_checked() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError, match="q must be within"):
        percentile([1.0], 101)
