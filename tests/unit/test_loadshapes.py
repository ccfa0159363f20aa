"""Load shapes as tables (target rate and users at run time t), and the loopback-only host guard."""

from __future__ import annotations

import random

import pytest

from loadtests import corpus, shapes
from loadtests.run_locust import SHED, check_host, failure_text

STEP = shapes.build("step", 30.0)  # 10 -> 100 -> 1,000 req/s, 10 s each
RAMP = shapes.build("ramp", 10.0, start=10.0, end=110.0)
SPIKE = shapes.build("spike", 50.0, base=20.0, peak=500.0, share=0.2)  # 20 s base, 10 s peak, 20 s base


@pytest.mark.parametrize(
    ("stages", "t", "rps", "tick"),
    [
        (STEP, 0.0, 10.0, (1, 1.0)),  # 10 / 10 per user = 1 user
        (STEP, 9.99, 10.0, (1, 1.0)),
        (STEP, 10.0, 100.0, (10, 10.0)),  # the step: all 10 users spawn within one second
        (STEP, 25.0, 1000.0, (100, 100.0)),
        (STEP, 30.0, None, None),  # table ran out: locust stops
        (RAMP, 0.0, 10.0, (1, 1.0)),
        (RAMP, 5.0, 60.0, (6, 6.0)),  # 10 + (110 - 10) * 5 / 10
        (RAMP, 9.9, 109.0, (11, 11.0)),  # 10 + 100 * 0.99 = 109 -> ceil(10.9)
        (SPIKE, 19.9, 20.0, (2, 2.0)),
        (SPIKE, 20.0, 500.0, (50, 50.0)),
        (SPIKE, 30.0, 20.0, (2, 2.0)),
        (shapes.build("steady", 5.0, rps=0.5), 1.0, 0.5, (1, 1.0)),  # never fewer than one user
    ],
    ids=["step-start", "step-end-of-first", "step-to-100", "step-1000", "step-over", "ramp-start", "ramp-mid",
         "ramp-near-end", "spike-before", "spike-peak", "spike-after", "steady-below-one-user"],
)
def test_shape_tables(stages, t: float, rps: float | None, tick) -> None:
    got = shapes.target_rps(stages, t)
    assert got == pytest.approx(rps) if rps is not None else got is None
    assert shapes.tick(stages, t, per_user_rps=10.0) == tick


@pytest.mark.parametrize(
    ("name", "duration", "total"),
    [("steady", 12.0, 12.0), ("step", 30.0, 30.0), ("ramp", 7.0, 7.0), ("spike", 50.0, 50.0)],
)
def test_every_shape_spans_the_requested_duration(name: str, duration: float, total: float) -> None:
    assert shapes.total_duration(shapes.build(name, duration)) == pytest.approx(total)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: shapes.build("square", 10.0), "shape must be one of"),
        (lambda: shapes.build("steady", 0.0), "duration_s must be > 0"),
        (lambda: shapes.build("step", 10.0, levels=()), "levels"),
        (lambda: shapes.build("spike", 10.0, share=1.5), "share"),
        (lambda: shapes.users_for(10.0, 0.0), "per_user_rps"),
        (lambda: shapes.Stage(5.0, -1.0), "rates must be >= 0"),
    ],
    ids=["unknown-shape", "zero-duration", "no-levels", "bad-share", "zero-pace", "negative-rate"],
)
def test_bad_shape_arguments_say_what_is_wrong(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8000", "http://localhost:8000/", "http://[::1]:8000", "https://127.0.0.2:443"],
)
def test_loopback_hosts_are_accepted(url: str) -> None:
    assert check_host(url) == url.rstrip("/")


@pytest.mark.parametrize(
    "url",
    ["http://10.0.0.5:8000", "http://0.0.0.0:8000", "http://example.com", "http://127.0.0.1.nip.io:8000",
     "127.0.0.1:8000", "ftp://127.0.0.1/", ""],
    ids=["private-ip", "all-interfaces", "dns-name", "dns-lookalike", "no-scheme", "wrong-scheme", "empty"],
)
def test_other_hosts_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="host must be"):
        check_host(url)


def test_batches_follow_the_mix_and_the_cap(tmp_path) -> None:
    csv = tmp_path / "c.csv"
    csv.write_text("sentiment,confidence,text\npositive,1,good\nnegative,1,  \nneutral,1,fine\n", encoding="latin-1")
    texts = corpus.load_texts(csv)
    assert texts == ["good", "fine"]  # blank rows dropped
    rng = random.Random(0)
    sizes = [len(corpus.draw_batch(texts, rng)) for _ in range(2000)]
    assert set(sizes) <= {n for n, _ in corpus.BATCH_MIX}
    assert 0.55 < sizes.count(1) / len(sizes) < 0.65  # BATCH_MIX gives 60% single texts
    assert max(len(corpus.draw_batch(texts, rng, max_batch=4)) for _ in range(200)) == 4


# ---- the autoscaling benchmark's analysis (pure) ----------------------------------------------------
def _rows(spec: list[tuple[float, int, int]]):
    from loadtests.bench_autoscale import Second

    return [Second(t, rps, int(rps // 10), running, starting, 0.0, 0.0, 0.0, 0) for t, (rps, running, starting)
            in enumerate(spec)]


@pytest.mark.parametrize(
    ("counts", "changes"),
    [
        ([1, 1, 2, 2, 2], 0),  # one scale-up: no turn
        ([1, 2, 2, 1], 1),  # up then down once (a load that went away)
        ([1, 2, 1, 2, 1], 3),  # flapping
        ([2, 2, 2], 0),
        ([], 0),
    ],
    ids=["single-up", "up-down", "flapping", "flat", "empty"],
)
def test_direction_changes(counts: list[int], changes: int) -> None:
    from loadtests.bench_autoscale import direction_changes

    assert direction_changes(counts) == changes


def test_scale_up_is_timed_from_the_load_step() -> None:
    from loadtests.bench_autoscale import load_steps, scale_up_after

    # (target rps, running, starting): start from 0 is no step; step at t=3; STARTING at t=5, RUNNING at t=8.
    rows = _rows([(0, 1, 0), (10, 1, 0), (10, 1, 0), (100, 1, 0), (100, 1, 0), (100, 1, 1), (100, 1, 1),
                  (100, 1, 1), (100, 2, 0), (100, 2, 0)])
    assert load_steps(rows) == [3]
    assert scale_up_after(rows, 3) == {"step_t": 3, "replicas_before": 1, "decision_s": 2, "ready_s": 5,
                                       "decision_to_ready_s": 3}
    never = _rows([(10, 1, 0), (100, 1, 0), (100, 1, 0)])
    assert scale_up_after(never, 1) == {"step_t": 1, "replicas_before": 1, "decision_s": None, "ready_s": None,
                                        "decision_to_ready_s": None}


def test_a_replica_already_starting_at_the_step_is_timed_from_its_own_decision() -> None:
    """Seen on a slow machine: the first level alone made the autoscaler start a replica 6 s before
    the step; counting its decision at the step (0) had made it look 6 s faster than it was."""
    from loadtests.bench_autoscale import replica_starts, scale_up_after

    # STARTING from t=2 (before the step at t=4), RUNNING at t=7.
    rows = _rows([(10, 1, 0), (10, 1, 0), (10, 1, 1), (10, 1, 1), (100, 1, 1), (100, 1, 1), (100, 1, 1),
                  (100, 2, 0), (100, 2, 0)])
    assert scale_up_after(rows, 4) == {"step_t": 4, "replicas_before": 1, "decision_s": -2, "ready_s": 3,
                                       "decision_to_ready_s": 5}
    assert replica_starts(rows) == [{"decision_t": 2, "ready_t": 7, "decision_to_ready_s": 5}]


@pytest.mark.parametrize(
    ("spec", "starts"),
    [
        ([(10, 1, 0), (10, 1, 1), (10, 2, 0), (100, 2, 0)], [(1, 2, 1)]),  # all before any step
        ([(10, 1, 0), (100, 1, 1), (100, 1, 1), (100, 2, 1), (100, 2, 1), (100, 3, 0)], [(1, 3, 2)]),  # two at once
        ([(10, 1, 0), (100, 1, 1), (100, 2, 0), (100, 2, 1), (100, 3, 0)], [(1, 2, 1), (3, 4, 1)]),
        ([(10, 1, 0), (100, 1, 1), (100, 1, 1)], [(1, None, None)]),  # never ready
        ([(10, 1, 0), (100, 1, 0)], []),
    ],
)
def test_replica_starts_are_found_wherever_they_fall(spec: list, starts: list) -> None:
    from loadtests.bench_autoscale import replica_starts

    assert [(s["decision_t"], s["ready_t"], s["decision_to_ready_s"]) for s in replica_starts(_rows(spec))] == starts


@pytest.mark.parametrize(
    ("spec", "oscillates"),
    [
        pytest.param([(10, 1, 0), (100, 1, 0), (100, 2, 0), (10, 2, 0), (10, 1, 0)], False,
                     id="follows-a-rise-and-fall"),
        pytest.param([(10, 1, 0), (100, 2, 0), (100, 1, 0), (100, 2, 0), (100, 2, 0)], True,
                     id="flaps-under-a-steady-step"),
        pytest.param([(10, 1, 0), (100, 2, 0), (100, 3, 0), (1000, 3, 0), (100, 3, 0), (10, 2, 0)], False,
                     id="up-twice-then-down-with-the-load"),
        pytest.param([(100, 2, 0), (100, 1, 0), (100, 2, 0), (100, 1, 0)], True, id="flapping-flat-load"),
        pytest.param([(100, 1, 0), (100, 1, 0)], False, id="flat"),
    ],
)
def test_oscillation_is_turning_more_often_than_the_load(spec: list[tuple[float, int, int]], oscillates: bool) -> None:
    from loadtests.bench_autoscale import oscillation

    assert oscillation(_rows(spec))["oscillates"] is oscillates


def test_summarize_reads_a_written_run_back(tmp_path) -> None:
    import csv
    from dataclasses import asdict

    from loadtests.bench_autoscale import summarize

    rows = _rows([(10, 1, 0), (10, 1, 1), (100, 1, 1), (100, 2, 0)])
    run = tmp_path / "r1"
    run.mkdir()
    with open(run / "autoscale.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        w.writeheader()
        w.writerows(asdict(r) for r in rows)
    assert summarize([run]) == [{"run": "r1",
                                 "steps": [{"step_t": 2, "replicas_before": 1, "decision_s": -1, "ready_s": 1,
                                            "decision_to_ready_s": 2}],
                                 "replica_starts": [{"decision_t": 1, "ready_t": 3, "decision_to_ready_s": 2}]}]


@pytest.mark.parametrize(
    ("status", "retry_after", "body", "expected"),
    [
        (429, "2", '{"error": "version 1 of model \'m\' is overloaded (40 texts queued, limit 35)"}', SHED),
        (503, "1", '{"error": "the ingress is starting"}', 'HTTP 503: {"error": "the ingress is starting"}'),
        (429, None, "slow down", "HTTP 429: slow down"),  # no Retry-After: not our shedding
        (500, "1", "boom", "HTTP 500: boom"),  # a server fault stays a failure, whatever its headers
        (404, None, "x" * 300, "HTTP 404: " + "x" * 200),
    ],
    ids=["shed-429", "503-is-unavailable-not-shed", "429-without-retry-after", "500", "long-body-cut"],
)
def test_locust_names_shed_answers_apart_from_failures(status: int, retry_after: str | None, body: str,
                                                        expected: str) -> None:
    assert failure_text(status, retry_after, body) == expected
