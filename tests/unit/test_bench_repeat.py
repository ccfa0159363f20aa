"""The repeat driver's arithmetic: medians, ranges and ratios paired within a repeat."""

from __future__ import annotations

import pytest

from loadtests.bench_repeat import aggregate, best_under_slo, order, spread


def _p(repeat: int, variant: str, target: str, c: int, rps: float, p99: float, errors: int = 0) -> dict:
    return {"repeat": repeat, "variant": variant, "target": target, "concurrency": c, "requests": 100,
            "errors": errors, "rps": rps, "p99_ms": p99}


@pytest.mark.parametrize(("values", "expected"), [
    ([], {"n": 0, "median": None, "min": None, "max": None}),
    ([3.0], {"n": 1, "median": 3.0, "min": 3.0, "max": 3.0}),
    ([1.0, 5.0, 2.0], {"n": 3, "median": 2.0, "min": 1.0, "max": 5.0}),
    ([1.0, 2.0, 3.0, 10.0], {"n": 4, "median": 2.5, "min": 1.0, "max": 10.0}),
])
def test_spread(values: list[float], expected: dict) -> None:
    assert spread(values) == expected


@pytest.mark.parametrize(("points", "best_rps"), [
    ([_p(1, "n", "s", 1, 10, 50), _p(1, "n", "s", 4, 30, 90), _p(1, "n", "s", 8, 40, 150)], 30),
    ([_p(1, "n", "s", 1, 10, 50), _p(1, "n", "s", 4, 30, 90, errors=1)], 10),  # an error disqualifies
    ([_p(1, "n", "s", 1, 10, 150)], None),  # nothing within the SLO
])
def test_best_under_slo(points: list[dict], best_rps: float | None) -> None:
    best = best_under_slo(points, 100)
    assert (best["rps"] if best else None) == best_rps


@pytest.mark.parametrize(("repeat", "expected"), [(0, ["new", "old"]), (1, ["old", "new"]), (2, ["new", "old"])])
def test_order_alternates(repeat: int, expected: list[str]) -> None:
    assert order(repeat, ["new", "old"]) == expected


def test_ratio_pairs_each_point_with_the_baseline_of_its_own_repeat() -> None:
    points = [
        # repeat 1 is a slow repeat for everyone, repeat 2 a fast one
        _p(1, "new", "triton", 16, 50, 200), _p(1, "new", "stack", 16, 45, 250), _p(1, "old", "stack", 16, 30, 300),
        _p(2, "new", "triton", 16, 100, 200), _p(2, "new", "stack", 16, 80, 250), _p(2, "old", "stack", 16, 70, 300),
    ]
    out = aggregate(points, slo_ms=100)
    new16 = out["new:stack"]["levels"]["16"]
    assert new16["ratio_to_triton"] == {"n": 2, "median": 0.85, "min": 0.8, "max": 0.9}
    assert new16["rps"] == {"n": 2, "median": 62.5, "min": 45.0, "max": 80.0}
    assert out["old:stack"]["levels"]["16"]["ratio_to_triton"]["median"] == 0.65
    assert out["new:triton"]["levels"]["16"]["ratio_to_triton"]["median"] == 1.0
    assert out["new:stack"]["best_rps_p99_le_100ms"]["n"] == 0  # p99 250 ms: no point within the SLO


def test_best_ratio_is_per_repeat() -> None:
    points = [_p(1, "new", "triton", 4, 100, 80), _p(1, "new", "stack", 4, 90, 90),
              _p(2, "new", "triton", 4, 80, 80), _p(2, "new", "stack", 4, 80, 95)]
    out = aggregate(points, slo_ms=100)
    assert out["new:stack"]["best_ratio_to_triton"] == {"n": 2, "median": 0.95, "min": 0.9, "max": 1.0}


def test_summarize_dir_pairs_runs_made_one_by_one(tmp_path) -> None:  # noqa: ANN001
    from loadtests.bench_repeat import summarize_dir

    header = "target,concurrency,requests,errors,rps,p50_ms,p99_ms\n"
    for name, triton, stack in (("r1", 100, 90), ("r2", 200, 160), ("r10", 50, 40)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "overhead.csv").write_text(
            header + f"triton,16,500,0,{triton},50,80\nstack,16,500,0,{stack},60,90\n")
    out = summarize_dir(tmp_path, slo_ms=100)
    assert out["repeats"] == 3
    assert out["results"]["new:stack"]["levels"]["16"]["ratio_to_triton"] == {
        "n": 3, "median": 0.8, "min": 0.8, "max": 0.9}
    with pytest.raises(SystemExit, match="no r\\*/overhead.csv"):
        summarize_dir(tmp_path / "r1", slo_ms=100)


def test_same_client_ratio_pairs_each_stack_target_with_the_triton_target_of_its_client() -> None:
    points = [_p(1, "new", "triton", 16, 200, 80), _p(1, "new", "triton-http", 16, 100, 80),
              _p(1, "new", "stack-oip", 16, 90, 90), _p(1, "new", "stack-grpc", 16, 170, 90),
              _p(1, "new", "stack", 16, 150, 90), _p(2, "new", "triton-http", 16, 120, 80),
              _p(2, "new", "stack-oip", 16, 96, 90), _p(2, "new", "triton", 16, 100, 80)]
    out = aggregate(points, slo_ms=100)
    oip = out["new:stack-oip"]["levels"]["16"]
    assert oip["ratio_to_triton-http_same_client"] == {"n": 2, "median": 0.85, "min": 0.8, "max": 0.9}
    assert oip["ratio_to_triton"]["median"] == 0.705  # 0.45 and 0.96, against the gRPC Triton
    assert out["new:stack-grpc"]["levels"]["16"]["ratio_to_triton_same_client"]["median"] == 0.85
    assert "ratio_to_triton_same_client" not in out["new:stack"]["levels"]["16"]  # /v1/predict has no twin
