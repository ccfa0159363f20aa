"""The rollout controller's I/O: metrics parsing and window deltas, applying decide()'s actions to a
real (tmp) registry under a fake clock, resuming from the stored JSON, webhooks, CLI and timeline."""

from __future__ import annotations

import http.server
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from distilserve.core.card import LatencyStats, Lineage, ModelCard
from serving.control.metrics_source import (
    Snapshot,
    TextMetricsSource,
    VersionCounters,
    histogram_quantile,
    parse_snapshot,
    window_stats,
)
from serving.control.rollout_doc import RolloutDoc, experiment_salt
from serving.control.rollout_start import RolloutRefused, StartRequest, start_rollout
from serving.control.rollouts import NoActiveRollout, RolloutController, build_window, check_smoke_response
from serving.control.timeline import draw_timeline, traffic_series
from serving.control.webhooks import WebhookNotifier, payload
from serving.metrics import Metrics
from serving.registry import Registry
from serving.rollout.sticky import assign
from serving.traffic_table import TrafficTable

M = "sentiment"
T0 = 1_000_000.0
LABELS = ["negative", "neutral", "positive"]


# ---- fixtures -------------------------------------------------------------------------------


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t

    def advance(self, s: float) -> None:
        self.t += s


def card(version: str, accuracy: float = 0.9, p99_ms: float = 10.0) -> ModelCard:
    return ModelCard(
        model=M,
        version=version,
        kind="teacher",
        labels=LABELS,
        max_seq_len=64,
        accuracy=accuracy,
        eval_examples=100,
        latency=[LatencyStats(batch_size=1, p50_ms=p99_ms / 2, p99_ms=p99_ms, runs=5)],
        parameters=10,
        bytes=10,
        created_at="2025-01-01T00:00:00Z",
        lineage=Lineage(
            weights_sha256=f"sha-{version}",
            code_commit="c",
            code_dirty=False,
            data_fingerprint="d",
            config_hash="h",
        ),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def location(tmp_path: Path) -> str | Path:
    """The registry's database: a SQLite file here; tests/integration/test_registry_backends.py
    runs these tests again with a PostgreSQL URL."""
    return tmp_path / "registry.db"


@pytest.fixture
def reg(location: str | Path, tmp_path: Path, clock: Clock) -> Iterator[Registry]:
    r = Registry(location, clock=clock)
    for v in ("1", "2"):
        folder = tmp_path / M / v
        folder.mkdir(parents=True)
        r.register_version(M, v, folder, card(v, p99_ms=10.0))
    r.set_traffic(M, {"1": 100.0}, reason="initial", actor="test")
    yield r
    r.close()


class Load:
    """Live traffic as the ingress would count it: a real `Metrics` plus recorded predictions."""

    def __init__(self, reg: Registry, clock: Clock) -> None:
        self.metrics = Metrics()
        self.reg, self.clock = reg, clock
        self.n = 0
        self.fail = False  # scrape fails while True

    def scrape(self, model: str) -> Snapshot | None:
        return None if self.fail else TextMetricsSource(self.metrics.render).scrape(model)

    def serve(self, version: str, n: int, *, errors: int = 0, seconds: float = 0.01, correct: int | None = None,
              conversions: int | None = None) -> None:
        """`n` requests to `version` (the first `errors` fail), each labelled; `correct` of the ok ones right."""
        ok = n - errors
        correct = ok if correct is None else correct
        for i in range(n):
            code = 500 if i < errors else 200
            self.metrics.observe(M, version, "v1", code, seconds, 1)
            if code == 200:
                self.n += 1
                rid = f"r{self.n}"
                self.reg.record_prediction(rid, M, version, "positive", f"u{self.n}", self.clock())
                label = "positive" if i - errors < correct else "negative"
                outcome = None if conversions is None else int(i - errors < conversions)
                self.reg.record_feedback(rid, label=label, outcome=outcome)

    def shadow(self, version: str, n: int, agree: int, seconds: float = 0.01) -> None:
        for _ in range(n):
            self.metrics.shadow_requests.labels(M, version, "ok").inc()
            self.metrics.shadow_latency.labels(M, version).observe(seconds)
        self.metrics.shadow_agreement.labels(M, version).inc(agree)


@pytest.fixture
def load(reg: Registry, clock: Clock) -> Load:
    return Load(reg, clock)


def controller(reg: Registry, load: Load, clock: Clock, **kw: object) -> RolloutController:
    kw.setdefault("ready_check", lambda m, v: True)
    return RolloutController(reg, [M], load, clock=clock, **kw)  # type: ignore[arg-type]


GATES = {"min_requests": 20, "min_labels": 10, "max_error_rate_increase": 0.01, "max_p99_ratio": 1.5,
         "max_accuracy_drop": 0.05}


def start(reg: Registry, clock: Clock, policy: dict, **body: object) -> RolloutDoc:
    doc, _ = start_rollout(reg, M, StartRequest(version="2", policy=policy, **body), clock(), rollout_id="r1")
    return doc


def canary(reg: Registry, clock: Clock, **policy: object) -> RolloutDoc:
    return start(reg, clock, {"strategy": "canary", "step_weights": [10, 50, 100], "step_interval_s": 60,
                              "gates": GATES, **policy})


def kinds(reg: Registry, rollout_id: str = "r1") -> list[str]:
    return [e.kind for e in reversed(reg.events(M, rollout_id=rollout_id))]


def stored(reg: Registry) -> RolloutDoc | None:
    active = reg.load_active_rollout(M)
    return RolloutDoc.model_validate_json(active.status_json) if active else None


def window_passes(load: Load, clock: Clock, ctl: RolloutController, cand_errors: int = 0,
                  cand_seconds: float = 0.01) -> list:
    """One analysis window: healthy stable, a candidate with `cand_errors`/`cand_seconds`, then the tick."""
    clock.advance(30)
    load.serve("1", 50)
    load.serve("2", 50, errors=cand_errors, seconds=cand_seconds)
    clock.advance(31)
    return ctl.tick()


# ---- metrics parsing and window deltas -------------------------------------------------------

PROM_TEXT = """\
# HELP distilserve_requests_total Requests answered, by outcome code
# TYPE distilserve_requests_total counter
distilserve_requests_total{code="200",model="sentiment",route="v1",version="1"} 90.0
distilserve_requests_total{code="200",model="sentiment",route="v2",version="1"} 5.0
distilserve_requests_total{code="500",model="sentiment",route="v1",version="1"} 3.0
distilserve_requests_total{code="503",model="sentiment",route="v1",version="1"} 2.0
distilserve_requests_total{code="200",model="other",route="v1",version="1"} 1000.0
# TYPE distilserve_request_latency_seconds histogram
distilserve_request_latency_seconds_bucket{le="0.01",model="sentiment",version="1"} 50.0
distilserve_request_latency_seconds_bucket{le="0.1",model="sentiment",version="1"} 94.0
distilserve_request_latency_seconds_bucket{le="+Inf",model="sentiment",version="1"} 95.0
distilserve_request_latency_seconds_count{model="sentiment",version="1"} 95.0
distilserve_request_latency_seconds_sum{model="sentiment",version="1"} 3.2
# TYPE distilserve_shadow_requests_total counter
distilserve_shadow_requests_total{model="sentiment",outcome="ok",version="2"} 40.0
distilserve_shadow_requests_total{model="sentiment",outcome="error",version="2"} 2.0
# TYPE distilserve_shadow_agreements_total counter
distilserve_shadow_agreements_total{model="sentiment",version="2"} 36.0
"""


def test_parse_prometheus_text_counts_one_model_per_version() -> None:
    snap = parse_snapshot(PROM_TEXT, M)
    v1, v2 = snap.versions["1"], snap.versions["2"]
    # 90 + 5 + 3 + 2 requests of every code and route; 5xx = 3 + 2; the other model is ignored.
    assert (v1.requests, v1.errors) == (100.0, 5.0)
    assert v1.latency == {"0.01": 50.0, "0.1": 94.0, "+Inf": 95.0}
    assert (v2.shadow_ok, v2.shadow_errors, v2.shadow_agreed) == (40.0, 2.0, 36.0)


def test_parse_real_metrics_render() -> None:
    m = Metrics()
    for _ in range(7):
        m.observe(M, "3", "v2", 200, 0.004, 1)
    m.observe(M, "3", "v1", 500, 1.0, 1)
    c = parse_snapshot(m.render().decode(), M).versions["3"]
    # Errors are not timed (metrics.observe): 7 latencies, 8 requests, 1 error.
    assert (c.requests, c.errors, c.latency["+Inf"], c.latency["0.005"]) == (8, 1, 7, 7)


@pytest.mark.parametrize(
    ("buckets", "q", "expected"),
    [
        pytest.param({}, 0.99, None, id="no-histogram"),
        pytest.param({"0.1": 0, "+Inf": 0}, 0.99, None, id="empty"),
        # rank 0.99*100 = 99 in (0.1, 0.2]: 0.1 + 0.1 * (99 - 50) / (100 - 50) = 0.198
        pytest.param({"0.1": 50, "0.2": 100, "+Inf": 100}, 0.99, 0.198, id="interpolated"),
        # rank 0.5*10 = 5 in the first bucket [0, 0.01]: 0.01 * 5 / 10
        pytest.param({"0.01": 10, "+Inf": 10}, 0.5, 0.005, id="first-bucket"),
        # rank in +Inf: the highest finite bound (Prometheus), never NaN or inf
        pytest.param({"0.01": 1, "0.5": 2, "+Inf": 100}, 0.99, 0.5, id="overflow"),
    ],
)
def test_histogram_quantile(buckets: dict, q: float, expected: float | None) -> None:
    got = histogram_quantile(q, buckets)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_window_deltas_and_p99_from_bucket_deltas() -> None:
    m = Metrics()
    for _ in range(100):
        m.observe(M, "1", "v1", 200, 0.004, 1)  # before the window: fast
    before = parse_snapshot(m.render().decode(), M)
    for _ in range(100):
        m.observe(M, "1", "v1", 200, 0.2, 1)  # in the window: slow
    for _ in range(4):
        m.observe(M, "1", "v1", 500, 0.2, 1)
    stats = window_stats(parse_snapshot(m.render().decode(), M), before, ["1", "2"])
    s = stats["1"]
    assert (s.requests, s.errors) == (104, 4)
    # Window buckets: all 100 timed requests in (0.15, 0.25]; rank 99 -> 150 + 100 * 99/100 = 249 ms.
    # Without the delta the cumulative p99 would mix in the 100 fast ones (rank 198 of 200, same bucket,
    # 150 + 100 * 98/100 = 248): the assertion below needs the delta, not just the bucket.
    assert s.p99_ms == pytest.approx(249.0)
    # A version never seen: 0 requests, no p99 -> the gates call that inconclusive, never a pass.
    assert stats["2"].requests == 0 and stats["2"].p99_ms is None


def test_counter_reset_counts_from_zero() -> None:
    before = Snapshot(versions={"1": VersionCounters(requests=500, errors=10, latency={"0.1": 500, "+Inf": 500})})
    now = Snapshot(versions={"1": VersionCounters(requests=30, errors=1, latency={"0.1": 29, "+Inf": 29})})
    s = window_stats(now, before, ["1"])["1"]
    # The ingress restarted: everything since the restart, like Prometheus' increase().
    assert (s.requests, s.errors) == (30, 1) and s.p99_ms is not None and s.p99_ms <= 100


def test_shadow_window_caps_agreement_at_compared() -> None:
    before = Snapshot()
    now = Snapshot(versions={"2": VersionCounters(shadow_ok=10, shadow_errors=1, shadow_agreed=14,
                                                  shadow_latency={"0.05": 10, "+Inf": 10})})
    s = window_stats(now, before, ["2"], shadow="2")["2"]
    assert (s.requests, s.errors, s.compared, s.agreed) == (11, 1, 10, 10)


# ---- canary: actions applied to a real registry --------------------------------------------


def test_good_canary_steps_to_100_with_events_in_order(reg: Registry, load: Load, clock: Clock) -> None:
    canary(reg, clock)
    ctl = controller(reg, load, clock)
    assert reg.warm_versions(M) == ["2"]  # deployed at 0 % before the first decide
    ctl.tick()  # pending -> step 1
    assert reg.get_traffic(M) == {"1": 90.0, "2": 10.0}
    window_passes(load, clock, ctl)
    assert reg.get_traffic(M) == {"1": 50.0, "2": 50.0}
    window_passes(load, clock, ctl)
    assert reg.get_traffic(M) == {"1": 0.0, "2": 100.0}
    assert reg.load_active_rollout(M) is None and reg.warm_versions(M) == []
    # 10 % passes -> 50 %; 50 % passes -> straight to promote (the next step is 100).
    assert kinds(reg) == [
        "rollout.started", "rollout.set_traffic", "rollout.set_traffic", "rollout.promote", "rollout.finished"]
    promote = reg.events(M, rollout_id="r1")[1]
    assert promote.data["window"]["2"]["requests"] == 50 and "all gates passed" in promote.message
    assert [h.actor for h in reg.history(M, 3)] == ["rollout-controller"] * 3


def test_errors_roll_back_automatically(reg: Registry, load: Load, clock: Clock) -> None:
    canary(reg, clock)
    ctl = controller(reg, load, clock)
    ctl.tick()
    events = window_passes(load, clock, ctl, cand_errors=10)
    assert [e.kind for e in events] == ["rollout.rollback", "rollout.finished"]
    assert "error rate 0.2000" in events[0].message
    assert reg.get_traffic(M) == {"1": 100.0, "2": 0.0}
    assert reg.load_active_rollout(M) is None and reg.warm_versions(M) == []


def test_five_times_latency_rolls_back(reg: Registry, load: Load, clock: Clock) -> None:
    canary(reg, clock)
    ctl = controller(reg, load, clock)
    ctl.tick()
    # 10 ms stable (bucket (0.005, 0.01]) vs 50 ms candidate (bucket (0.035, 0.05]): ratio ~5 > 1.5.
    events = window_passes(load, clock, ctl, cand_seconds=0.05)
    assert events[0].kind == "rollout.rollback" and "p99" in events[0].message


def test_accuracy_drop_from_feedback_labels_rolls_back(reg: Registry, load: Load, clock: Clock) -> None:
    canary(reg, clock)
    ctl = controller(reg, load, clock)
    ctl.tick()
    clock.advance(30)
    load.serve("1", 50, correct=45)  # 0.90
    load.serve("2", 50, correct=35)  # 0.70: drop 0.20 > 0.05
    clock.advance(31)
    events = ctl.tick()
    assert events[0].kind == "rollout.rollback" and "accuracy 0.7000 vs stable 0.9000" in events[0].message


def test_missing_metrics_pause_then_roll_back_never_promote(reg: Registry, load: Load, clock: Clock) -> None:
    canary(reg, clock, max_inconclusive=2)
    ctl = controller(reg, load, clock)
    ctl.tick()
    load.fail = True
    first = window_passes(load, clock, ctl)
    assert [e.kind for e in first] == ["rollout.pause"] and "no metrics" in first[0].message
    assert reg.get_traffic(M) == {"1": 90.0, "2": 10.0}  # frozen, not advanced
    second = window_passes(load, clock, ctl)
    assert [e.kind for e in second] == ["rollout.rollback", "rollout.finished"]
    assert reg.get_traffic(M)["2"] == 0.0


def test_no_labels_means_inconclusive_when_the_accuracy_gate_is_on(reg: Registry, load: Load, clock: Clock) -> None:
    canary(reg, clock)
    ctl = controller(reg, load, clock)
    ctl.tick()
    clock.advance(61)
    for v in ("1", "2"):  # traffic, but nobody sent /v1/feedback
        for _ in range(50):
            load.metrics.observe(M, v, "v1", 200, 0.01, 1)
    assert [e.kind for e in ctl.tick()] == ["rollout.pause"]


def test_restarted_controller_resumes_from_the_registry(reg: Registry, load: Load, clock: Clock, tmp_path: Path) -> None:
    canary(reg, clock)
    controller(reg, load, clock).tick()
    clock.advance(30)
    load.serve("1", 50)
    load.serve("2", 50)  # counted in the window the first controller started
    # Crash: a new process opens the file; nothing carried over but the registry.
    reg2 = Registry(reg.location, clock=clock)
    clock.advance(31)
    events = controller(reg2, load, clock).tick()
    assert events[0].kind == "rollout.set_traffic" and reg2.get_traffic(M) == {"1": 50.0, "2": 50.0}
    doc = stored(reg2)
    assert doc is not None and doc.status.step == 1 and doc.rev == 2 and doc.baseline_at == clock()


def test_operator_commands_act_at_once_and_win_races(reg: Registry, load: Load, clock: Clock) -> None:
    canary(reg, clock)
    ctl = controller(reg, load, clock)
    ctl.tick()
    operator = controller(reg, load, clock, actor="admin-api")

    class Racing:
        """A scrape during which an operator pauses: the tick's stale decision must be dropped."""

        def scrape(self, model: str) -> Snapshot | None:
            operator.command(M, "pause")
            return load.scrape(model)

    clock.advance(30)
    load.serve("1", 50)
    load.serve("2", 50)
    clock.advance(31)
    assert controller(reg, Racing(), clock).tick() == []  # type: ignore[arg-type]
    doc = stored(reg)
    assert doc is not None and doc.status.manual_pause and reg.get_traffic(M) == {"1": 90.0, "2": 10.0}
    assert ctl.tick() == []  # paused: holds silently
    action, doc, _ = operator.command(M, "resume")
    assert action.kind == "hold" and doc.status.phase == "progressing"
    action, _, events = operator.command(M, "rollback")
    assert action.kind == "rollback" and [e.kind for e in events] == ["rollout.rollback", "rollout.finished"]
    assert reg.get_traffic(M) == {"1": 100.0, "2": 0.0}
    with pytest.raises(NoActiveRollout):
        operator.command(M, "pause")


def test_candidate_that_never_gets_ready_is_aborted(reg: Registry, load: Load, clock: Clock) -> None:
    start(reg, clock, {"strategy": "canary", "gates": GATES}, ready_timeout_s=60)
    ctl = controller(reg, load, clock, ready_check=lambda m, v: False)
    assert ctl.tick() == [] and reg.get_traffic(M) == {"1": 100.0}
    clock.advance(61)
    events = ctl.tick()
    assert events[-1].kind == "rollout.finished" and "not ready within 60 s" in events[0].message
    assert reg.warm_versions(M) == []


# ---- start validation ------------------------------------------------------------------------


def test_gates_default_from_cards_and_overrides_win(reg: Registry, clock: Clock) -> None:
    doc = start(reg, clock, {"strategy": "canary"}, gate_overrides={"min_requests": 7})
    gates = doc.policy.gates  # type: ignore[union-attr]
    # Both cards: p99 10 ms -> ratio max(10/10, 1) * 1.5; accuracy gap 0 + 0.02 headroom.
    assert (gates.max_p99_ratio, gates.max_accuracy_drop, gates.min_requests) == (1.5, 0.02, 7)


@pytest.mark.parametrize(
    ("traffic", "version", "message"),
    [
        pytest.param({"1": 50.0, "2": 50.0}, "2", "split", id="split-traffic"),
        pytest.param({"1": 100.0}, "1", "already takes 100", id="candidate-is-stable"),
        pytest.param({"1": 100.0}, "9", "not registered", id="unknown-version"),
    ],
)
def test_start_refusals(reg: Registry, clock: Clock, traffic: dict, version: str, message: str) -> None:
    reg.set_traffic(M, traffic, reason="test")
    with pytest.raises(RolloutRefused, match=message):
        start_rollout(reg, M, StartRequest(version=version, policy={"strategy": "canary"}), clock())


def test_one_active_rollout_per_model(reg: Registry, clock: Clock) -> None:
    canary(reg, clock)
    with pytest.raises(RolloutRefused, match="already has active rollout"):
        start_rollout(reg, M, StartRequest(version="2", policy={"strategy": "canary"}), clock(), rollout_id="r2")


# ---- blue-green, shadow, A/B -----------------------------------------------------------------


def test_blue_green_smoke_switch_keep_warm_then_scale_down(reg: Registry, load: Load, clock: Clock) -> None:
    smoked: list[tuple] = []
    start(reg, clock, {"strategy": "blue_green", "rollback_window_s": 300}, smoke_inputs=["hi"])
    ctl = controller(reg, load, clock, smoke=lambda m, v, texts: smoked.append((v, tuple(texts))) or (True, "ok"))
    ctl.tick()  # begin: idle colour, awaiting smoke
    assert reg.get_traffic(M) == {"1": 100.0} and smoked == []
    ctl.tick()  # smoke passes -> all at once
    assert smoked == [("2", ("hi",))] and reg.get_traffic(M) == {"1": 0.0, "2": 100.0}
    assert reg.warm_versions(M) == ["1", "2"]  # old colour kept for the rollback window
    clock.advance(299)
    ctl.tick()
    assert reg.warm_versions(M) == ["1", "2"]
    clock.advance(2)
    events = ctl.tick()
    assert [e.kind for e in events] == ["rollout.scale_down", "rollout.finished"]
    assert reg.warm_versions(M) == [] and reg.rollback_target(M) == "1"


def test_blue_green_failed_smoke_never_moves_traffic(reg: Registry, load: Load, clock: Clock) -> None:
    start(reg, clock, {"strategy": "blue_green"})
    ctl = controller(reg, load, clock, smoke=lambda m, v, t: (False, "smoke request -> 500: boom"))
    ctl.tick()
    events = ctl.tick()
    assert events[0].kind == "rollout.rollback" and events[0].data["smoke"].endswith("boom")
    assert all(h.traffic.get("2", 0) == 0 for h in reg.history(M))


def test_shadow_records_agreement_then_starts_its_canary(reg: Registry, load: Load, clock: Clock) -> None:
    start(reg, clock, {"strategy": "shadow", "sample_percent": 20, "min_samples": 30, "min_agreement": 0.8,
                       "gates": {"min_requests": 20, "max_p99_ratio": 2.0, "max_accuracy_drop": None}},
          then_canary={"step_weights": [50, 100], "step_interval_s": 60})
    ctl = controller(reg, load, clock)
    ctl.tick()
    assert reg.get_shadow(M).version == "2" and reg.get_traffic(M) == {"1": 100.0}  # type: ignore[union-attr]
    clock.advance(10)
    load.serve("1", 40)
    load.shadow("2", 20, agree=18)
    ctl.tick()  # 20 compared < 30: collecting
    assert stored(reg).status.totals["2"].agreed == 18  # type: ignore[union-attr]
    clock.advance(10)
    load.serve("1", 40)
    load.shadow("2", 20, agree=17)
    events = ctl.tick()  # 35/40 = 0.875 >= 0.8
    assert [e.kind for e in events] == ["rollout.promote", "rollout.finished", "rollout.started"]
    assert "agreement 0.8750" in events[0].message
    assert reg.get_shadow(M) is None and reg.get_traffic(M) == {"1": 100.0}
    follow = stored(reg)
    assert follow is not None and follow.policy.strategy == "canary" and follow.rollout_id == "r1-canary"
    assert reg.warm_versions(M) == ["2"]  # still deployed for its canary


def _ab_round(load: Load, clock: Clock, rng: random.Random, rates: dict[str, float], n: int) -> None:
    clock.advance(5)
    for v, p in rates.items():
        load.serve(v, n, conversions=sum(rng.random() < p for _ in range(n)))


def test_ab_names_a_winner_only_when_the_data_support_it(reg: Registry, load: Load, clock: Clock) -> None:
    start(reg, clock, {"strategy": "ab", "salt": "exp-7", "min_trials": 50, "alpha": 0.05})
    ctl = controller(reg, load, clock)
    ctl.tick()
    assert reg.get_traffic(M) == {"1": 50.0, "2": 50.0} and experiment_salt(reg, M) == "exp-7"
    rng = random.Random(3)
    for _ in range(10):  # A/A phase: both arms convert at 30 %
        _ab_round(load, clock, rng, {"1": 0.3, "2": 0.3}, 40)
        ctl.tick()
    doc = stored(reg)
    assert doc is not None and doc.status.ab is not None and doc.status.ab.winner is None
    assert doc.status.totals["1"].trials == 400  # every outcome counted once
    with pytest.raises(RolloutRefused, match="no significant winner"):
        controller(reg, load, clock).command(M, "promote-winner")
    for _ in range(40):  # now the candidate converts at 60 %
        _ab_round(load, clock, rng, {"1": 0.3, "2": 0.6}, 40)
        if ctl.tick():
            break
    events = reg.events(M, rollout_id="r1")
    winner = next(e for e in events if e.kind == "rollout.promote_winner")
    ab = winner.data["ab"]
    assert ab["winner"] == "2" and ab["effect"] > 0 and ab["ci_low"] > 0 and ab["p_value"] < 0.05
    assert reg.get_traffic(M) == {"1": 0.0, "2": 100.0} and experiment_salt(reg, M) is None


def test_ab_window_counts_late_outcomes_once(reg: Registry, load: Load, clock: Clock) -> None:
    doc = start(reg, clock, {"strategy": "ab", "salt": "s"})
    ctl = controller(reg, load, clock)
    ctl.tick()
    load.serve("2", 10, conversions=4)
    doc = stored(reg)
    assert doc is not None
    w1 = build_window(doc, load.scrape(M), reg.feedback_stats)
    assert (w1.versions["2"].trials, w1.versions["2"].conversions) == (10, 4)
    ctl.tick()
    w2 = build_window(stored(reg), load.scrape(M), reg.feedback_stats)  # type: ignore[arg-type]
    assert w2.versions["2"].trials == 0  # already in the totals


def test_router_sticky_assignment_is_serving_rollout_sticky() -> None:
    table = TrafficTable(weights={"1": 50.0, "2": 50.0}, salt="exp-7")
    users = [f"user-{i}" for i in range(2000)]
    assert [table.choose(u, 0.0) for u in users] == [assign(u, "exp-7", table.weights) for u in users]


# ---- webhooks ---------------------------------------------------------------------------------


@pytest.fixture
def hook_server():
    received: list[dict] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server API
            received.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", received
    server.shutdown()
    server.server_close()


def test_events_are_posted_to_webhooks(reg: Registry, load: Load, clock: Clock, hook_server) -> None:
    url, received = hook_server
    from tests.helpers import free_port

    dead = f"http://127.0.0.1:{free_port()}/nobody-listens"
    notifier = WebhookNotifier([dead, url], timeout_s=1.0)
    canary(reg, clock)
    ctl = controller(reg, load, clock, notifier=notifier)
    events = ctl.tick()  # delivery is asynchronous: the tick only queued the POSTs
    assert notifier.flush(10)
    assert [b["event"]["kind"] for b in received] == [e.kind for e in events] == ["rollout.set_traffic"]
    body = received[0]
    assert body["source"] == "distilserve" and body["event"]["rollout_id"] == "r1"
    assert body["event"]["data"]["traffic"] == {"1": 90.0, "2": 10.0} and "rollout.set_traffic" in body["text"]
    assert notifier.failed == 1 and notifier.delivered == 1  # the dead URL is logged, not fatal
    notifier.close()


def test_payload_is_json_serialisable(reg: Registry) -> None:
    event = reg.record_event(M, "rollout.hold", "x", {"a": 1}, rollout_id="r9")
    assert json.loads(json.dumps(payload(event)))["event"]["data"] == {"a": 1}


# ---- smoke responses, CLI rendering, timeline ---------------------------------------------------


def _oip(labels: list[str], probs: list[list[float]]) -> dict:
    return {"outputs": [
        {"name": "LABEL", "shape": [len(labels)], "datatype": "BYTES", "data": labels},
        {"name": "PROBABILITIES", "shape": [len(probs), len(probs[0])], "datatype": "FP32",
         "data": [p for row in probs for p in row]},
    ]}


@pytest.mark.parametrize(
    ("body", "ok"),
    [
        pytest.param(_oip(["positive"], [[0.1, 0.2, 0.7]]), True, id="good"),
        pytest.param(_oip(["joy"], [[0.1, 0.2, 0.7]]), False, id="label-not-in-card"),
        pytest.param(_oip(["positive"], [[0.5, 0.5, 0.5]]), False, id="not-a-distribution"),
        pytest.param(_oip(["positive"], [[float("nan"), 0.5, 0.5]]), False, id="nan"),
        pytest.param({"error": "x"}, False, id="malformed"),
    ],
)
def test_smoke_response_checks(body: dict, ok: bool) -> None:
    assert check_smoke_response(body, 1, set(LABELS))[0] is ok


def test_cli_start_body_from_flags() -> None:
    from distilserve.cli.main import build_parser
    from distilserve.cli.rollout_cmd import start_body

    args = build_parser().parse_args(
        ["rollout", "canary", "--version", "2", "--steps", "1,5,100", "--interval", "2",
         "--max-accuracy-drop", "none", "--min-requests", "5"]
    )
    assert start_body(args) == {
        "version": "2",
        "policy": {"strategy": "canary", "step_weights": [1.0, 5.0, 100.0], "step_interval_s": 2.0},
        "gate_overrides": {"min_requests": 5, "max_accuracy_drop": None},
    }
    bg = build_parser().parse_args(["rollout", "bluegreen", "--version", "3", "--smoke-input", "hello"])
    assert start_body(bg) == {"version": "3", "policy": {"strategy": "blue_green"}, "smoke_inputs": ["hello"]}


def test_status_and_timeline_render(reg: Registry, load: Load, clock: Clock, tmp_path: Path) -> None:
    from distilserve.cli.rollout_cmd import render_status
    from serving.control.admin import rollout_status

    canary(reg, clock)
    ctl = controller(reg, load, clock)
    ctl.tick()
    window_passes(load, clock, ctl)
    st = json.loads(json.dumps(rollout_status(reg, M, load.scrape(M))))
    assert st["active"] and st["rollout_id"] == "r1" and st["metrics"]["2"]["requests"] == 50
    text = render_status(st)
    assert "v1=50%  v2=50%" in text and "rollout.set_traffic" in text and "gates passed at 10.0%" in text
    window_passes(load, clock, ctl)
    st = rollout_status(reg, M, load.scrape(M))
    assert not st["active"] and st["final"]["phase"] == "promoted"
    t0, series = traffic_series(st["history"])
    # initial {1: 100} -> 10 % -> 50 % -> 100 % on version 2, at the ticks' fake times.
    assert series["2"][1] == [0.0, 10.0, 50.0, 100.0] and series["1"][1] == [100.0, 90.0, 50.0, 0.0]
    out = draw_timeline(st["history"], st["events"], tmp_path / "t.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_command_is_refused(reg: Registry, load: Load, clock: Clock) -> None:
    with pytest.raises(ValueError, match="command must be one of"):
        controller(reg, load, clock).command(M, "explode")


def test_thin_windows_add_up_and_late_labels_count(reg: Registry, load: Load, clock: Clock) -> None:
    canary(reg, clock, gates={**GATES, "min_labels": 20})
    ctl = controller(reg, load, clock)
    ctl.tick()
    clock.advance(30)
    load.serve("1", 50)
    late = []
    for _ in range(12):  # candidate requests whose labels arrive only in the next window
        load.metrics.observe(M, "2", "v1", 200, 0.01, 1)
        load.n += 1
        late.append(f"r{load.n}")
        reg.record_prediction(late[-1], M, "2", "positive", f"u{load.n}", clock())
    clock.advance(31)
    # 12 < 20 requests: inconclusive; the 12 stay as the step's evidence, with their histogram.
    assert [e.kind for e in ctl.tick()] == ["rollout.pause"]
    doc = stored(reg)
    assert doc is not None and doc.status.evidence["2"].requests == 12 and doc.status.evidence_buckets["2"]
    from serving.control.admin import rollout_status

    from distilserve.cli.rollout_cmd import render_status

    text = render_status(json.loads(json.dumps(rollout_status(reg, M, load.scrape(M)))))
    assert "step evidence: v1 50 req, 0 err, 50 labels, p99 10.0 ms; v2 12 req, 0 err, 0 labels" in text, text
    clock.advance(30)
    load.serve("1", 50)
    load.serve("2", 12)
    for rid in late:
        reg.record_feedback(rid, label="positive")
    clock.advance(31)
    # 12 + 12 = 24 >= 20 requests; labels 12 late + 12 = 24 >= 20 (the late ones counted once): advance.
    events = ctl.tick()
    assert [e.kind for e in events] == ["rollout.set_traffic"] and reg.get_traffic(M) == {"1": 50.0, "2": 50.0}
    doc = stored(reg)
    assert doc is not None and doc.status.evidence == {} and doc.status.evidence_started_at == clock()
