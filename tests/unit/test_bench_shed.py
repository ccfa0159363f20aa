"""The load-shedding benchmark's summary (pure): goodput and admitted p99 against the goals."""

from __future__ import annotations

import pytest

from loadtests.bench_shed import Sample, cpu_list, summarise, summary_table


def S(latency_ms: float, status: int, lag_s: float = 0.0) -> Sample:  # noqa: N802 - a table row
    return Sample(0.0, lag_s, latency_ms, status)


@pytest.mark.parametrize(
    ("samples", "expect"),
    [
        # 10 s: 95 admitted -> 9.5 req/s of a 10 req/s peak = 0.95; p99 of 95 x 30 ms = 30 ms, 3x the unloaded 10.
        ([S(30, 200)] * 95 + [S(1, 429)] * 300,
         {"admitted": 95, "shed": 300, "other": 0, "goodput_ratio": 0.95, "goodput_ok": True, "p99_ratio": 3.0,
          "p99_ok": True, "shed_p99_ms": 1.0, "no_timeouts": True, "offered_rps": 39.5}),
        # 80 admitted -> 0.8 of peak; p99 = 40 ms = 4x: both goals missed.
        ([S(40, 200)] * 80 + [S(2, 503)] * 20,
         {"admitted": 80, "shed": 20, "goodput_ratio": 0.8, "goodput_ok": False, "p99_ratio": 4.0, "p99_ok": False}),
        # a client timeout (status 0) and a 500 are neither goodput nor shedding
        ([S(10, 200)] * 100 + [S(30000, 0), S(5, 500)],
         {"admitted": 100, "shed": 0, "other": 2, "other_statuses": [0, 500], "no_timeouts": False,
          "shed_p99_ms": None}),
        # nothing admitted: no p99, and the ratio check cannot pass
        ([S(1, 429)] * 10, {"admitted": 0, "admitted_p99_ms": None, "p99_ok": False, "goodput_ratio": 0.0}),
    ],
    ids=["goals-met", "goals-missed", "errors-counted-apart", "all-shed"],
)
def test_summarise(samples: list[Sample], expect: dict) -> None:
    got = summarise(unloaded_p99_ms=10.0, peak_rps=10.0, samples=samples, duration_s=10.0)
    assert {k: got[k] for k in expect} == expect
    assert got["sent"] == len(samples) == got["admitted"] + got["shed"] + got["other"]


def test_client_lag_is_reported() -> None:
    got = summarise(10.0, 10.0, [S(10, 200, lag_s=0.002), S(10, 200, lag_s=0.050)], 1.0)
    assert got["client_lag_p99_ms"] == 50.0


@pytest.mark.parametrize(("spec", "cpus"), [(None, None), ("0", {0}), ("0,1", {0, 1}), ("0-3", {0, 1, 2, 3}),
                                            ("1,4-5", {1, 4, 5})])
def test_cpu_list(spec: str | None, cpus: set[int] | None) -> None:
    assert cpu_list(spec) == cpus


def test_cpu_list_quotes_a_bad_spec() -> None:
    with pytest.raises(SystemExit, match="got 'a-b'"):
        cpu_list("a-b")


def _result(slo: float, cpus, goodput: float, p99: float, other: int = 0) -> dict:  # noqa: ANN001
    return {"settings": {"shedding.enabled": "true", "shedding.slo_ms": str(slo)}, "server_cpus": cpus,
            "client_cpus": [0] if cpus != "all" else "all", "peak_rps": 80.0, "goodput_ratio": goodput,
            "p99_ratio": p99, "shed_p99_ms": 5.0, "other": other, "client_lag_p99_ms": 1.0}


def test_summary_table_groups_by_setting_with_median_and_range() -> None:
    table = summary_table([_result(150, [1], 0.7, 5.0), _result(150, [1], 0.9, 4.0, other=2),
                           _result(150, [1], 0.8, 6.0), _result(150, "all", 0.5, 9.0)]).splitlines()
    assert len(table) == 4  # header, rule, two settings
    pinned = next(line for line in table if "client on CPU [0]" in line)
    assert "| 3 |" in pinned and "0.80 (0.70-0.90)" in pinned and "5.0 (4.0-6.0)" in pinned and "| 2 |" in pinned
    shared = next(line for line in table if "shared CPUs" in line)
    assert "shedding.slo_ms=150" in shared and "0.50 (0.50-0.50)" in shared
