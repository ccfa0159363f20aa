"""The serving-overhead benchmark's pure parts: target specs, settings, the SLO pick and ratios."""

from __future__ import annotations

import pytest

from loadtests.bench_overhead import (
    Point,
    apply_settings,
    baseline_of,
    best_under_slo,
    oip_json_body,
    parse_target,
    split_flags,
    summary,
)
from serving.config import ServeConfig


def test_target_spec_splits_flags_from_settings_and_settings_reach_the_config() -> None:
    name, extra = parse_target("stack@RAY_SERVE_THROUGHPUT_OPTIMIZED=1+batching.paced=false+direct_triton=false")
    assert name == "stack"
    assert extra == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1", "batching.paced": "false", "direct_triton": "false"}
    settings, env = split_flags(extra)
    assert env == {"RAY_SERVE_THROUGHPUT_OPTIMIZED": "1"}
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


@pytest.mark.parametrize(("spec", "name", "same_client"), [
    ("stack", "stack", None),  # /v1/predict: no Triton target speaks it
    ("stack-grpc", "stack-grpc", "triton"),
    ("stack-oip@batching.max_wait_ms=2", "stack-oip", "triton-http"),
    ("triton-http", "triton-http", None),
    ("serve-torch", "serve-torch", None),
])
def test_targets_and_their_same_client_baseline(spec: str, name: str, same_client: str | None) -> None:
    assert parse_target(spec)[0] == name
    assert baseline_of(spec) == same_client


def test_triton_targets_take_no_settings() -> None:
    with pytest.raises(ValueError, match="only stack targets"):
        parse_target("triton-http@batching.max_wait_ms=2")


def test_same_client_ratio_is_reported_beside_the_ratio_to_grpc_triton() -> None:
    pts = [Point("triton", 16, 100, 0, 200.0, 30, 60), Point("triton-http", 16, 100, 0, 100.0, 30, 60),
           Point("stack-oip", 16, 100, 0, 90.0, 40, 80), Point("stack-grpc", 16, 100, 0, 180.0, 40, 80)]
    ratios = summary(pts, 100.0)["ratios"]
    assert ratios["stack-oip / triton-http"] == 0.9
    assert ratios["stack-oip / triton"] == 0.45
    assert ratios["stack-grpc / triton"] == 0.9


def test_oip_json_body_is_what_the_stack_parses_as_one_text() -> None:
    import json

    from serving.triton import codec

    req = codec.parse_infer_request(json.dumps(oip_json_body("so good")).encode(), None, codec.Limits())
    assert req.texts == ["so good"] and req.shape == [1, 1]


def test_ray_core_variables_in_mixed_case_go_to_the_environment() -> None:
    settings, env = split_flags(parse_target("stack@RAY_enable_metrics_collection=1+batching.max_wait_ms=2")[1])
    assert env == {"RAY_enable_metrics_collection": "1"} and settings == {"batching.max_wait_ms": "2"}
