"""The serving-overhead benchmark's pure parts: target specs, settings, the SLO pick and ratios."""

from __future__ import annotations

import pytest

from loadtests.bench_overhead import Point, apply_settings, best_under_slo, parse_target, summary
from serving.config import ServeConfig


def test_target_spec_splits_flags_from_settings_and_settings_reach_the_config() -> None:
    name, extra = parse_target("stack@RAY_SERVE_THROUGHPUT_OPTIMIZED=1+batching.paced=false+direct_triton=false")
    assert name == "stack"
    assert extra == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "batching.paced": "false", "direct_triton": "false"}
    settings = {k: v for k, v in extra.items() if not k.isupper()}
    cfg = ServeConfig.model_validate(apply_settings(ServeConfig().model_dump(), settings))
    assert cfg.batching.paced is False and cfg.direct_triton is False and cfg.batching.max_texts == 32
    with pytest.raises(ValueError, match="target must be"):
        parse_target("stak")


def test_best_point_is_the_fastest_that_meets_the_slo_without_errors() -> None:
    pts = [Point("t", 1, 100, 0, 50.0, 20, 40), Point("t", 4, 100, 0, 90.0, 40, 95),
           Point("t", 8, 100, 0, 120.0, 70, 130), Point("t", 6, 100, 2, 100.0, 50, 90)]
    assert best_under_slo(pts, 100.0).concurrency == 4  # c=8 misses the SLO, c=6 had errors
    out = summary([*pts, Point("triton", 4, 100, 0, 100.0, 30, 60)], 100.0)
    assert out["ratios"]["t / triton"] == 0.9
    assert out["peak_rps_any_latency"] == {"t": 120.0, "triton": 100.0}
