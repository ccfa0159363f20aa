"""The multi-node benchmark's reading of a fault: which requests were in flight, which failed
after it, and when service was back (loadtests/bench_multinode.py)."""

from __future__ import annotations

import pytest

from loadtests.bench_multinode import Record, around_fault, summarize


def ok(start: float, end: float, version: str = "1") -> Record:
    return Record(start, end, 200, version)


def failed(start: float, end: float, status: int = 503) -> Record:
    return Record(start, end, status, "", f"{status} no replica")


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        pytest.param([ok(0, 1), ok(11, 12)], {"in_flight": 0, "in_flight_failed": 0, "failed_after": 0,
                                               "recovered_s": 2, "longest_gap_s": 2, "service_back_s": 2},
                     id="nothing-failed"),
        pytest.param([ok(9, 11), failed(9.5, 10.5, 0), ok(12, 13)],
                     {"in_flight": 2, "in_flight_failed": 1, "failed_after": 0, "recovered_s": 3,
                      "last_failure_s": 0.5}, id="in-flight-counted-apart"),
        pytest.param([failed(10.5, 10.6), failed(11, 11.1), ok(12, 30), ok(29, 31)],
                     {"sent_after": 4, "failed_after": 2, "failed_after_by_status": {"503": 2},
                      "recovered_s": 20, "longest_gap_s": 20, "service_back_s": 20, "max_wait_after_s": 18},
                     id="refused-then-waited-through-the-outage"),
        pytest.param([failed(8, 9)], {"failed_before": 1, "failed_after": 0, "last_failure_s": None},
                     id="a-failure-before-the-fault-is-not-its"),
        pytest.param([failed(10.5, 11)], {"recovered_s": None, "longest_gap_s": None, "service_back_s": None},
                     id="never-recovered"),
        pytest.param([ok(10.1, 10.2), ok(10.3, 10.4), ok(11, 15), ok(15, 15.5)],
                     {"longest_gap_s": 4.6, "service_back_s": 5}, id="gap-is-the-longest-stretch-without-success"),
    ],
)
def test_around_fault(records: list[Record], expected: dict) -> None:
    got = around_fault(records, t_fault=10.0)
    assert {k: got[k] for k in expected} == expected  # figures are rounded to ms


def test_summarize_counts_statuses_versions_and_failure_kinds() -> None:
    got = summarize([ok(0, 1, "1"), ok(0, 1, "2"), ok(1, 2, "2"), failed(1, 2, 500), failed(2, 3, 500)])
    assert got["requests"] == 5 and got["by_status"] == {"200": 3, "500": 2}
    assert got["by_version"] == {"1": 1, "2": 2} and got["failed_details"] == ["500 no replica"]


def test_figures_and_their_table() -> None:
    from loadtests.bench_multinode import figure, summary_table

    runs = [
        {"deploy_s": 28.0, "canary": {"duration_s": 25.5, "load": {"by_status": {"200": 10}}},
         "broken": {"load": {"by_status": {"200": 5, "500": 3}}}},
        {"deploy_s": 30.0, "canary": {"duration_s": 24.0, "load": {"by_status": {"200": 9, "503": 2}}},
         "broken": {"load": {"by_status": {"200": 6}}}},
        {"deploy_s": 29.0},  # a run that stopped early: its missing figures are shown as such
    ]
    assert figure(runs[1], ("canary", "load", "failed")) == 2
    assert figure(runs[1], ("broken", "load", "by_status", "500")) == 0  # no 500 is zero 500s
    assert figure(runs[2], ("canary", "duration_s")) is None
    table = summary_table(runs).splitlines()
    assert "| deploy, generated config to first answer (s) | 29 | 28 - 30 | 28, 30, 29 |" in table
    assert "| canary 20/60/100 to promoted (s) | 24.75 | 24 - 25.50 | 25.50, 24, - |" in table
    assert "| canary: failed requests | 1 | 0 - 2 | 0, 2, - |" in table
