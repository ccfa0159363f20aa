"""A batch job's call size: bounded by a time budget (serving/batch/call_size.py), and the Predictor
that sends the calls in order, a bounded number at a time, each sized when it is sent."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from serving.backends import served_requests
from serving.batch.call_size import CallSizer, LiveWatch, next_size
from serving.batch.job import Predictor, call_budget_ms, calls_in_flight


@pytest.mark.parametrize(
    ("ms_per_text", "max_call_ms", "max_texts", "first", "size"),
    [
        (14.0, None, 64, 4, 64),      # no budget: full calls
        (None, 100.0, 64, 4, 4),      # nothing measured yet: the first size
        (None, 100.0, 2, 4, 2),       # ... never above the cap
        (14.0, 100.0, 64, 4, 7),      # CPU: 100 / 14 = 7.1 -> 7 texts
        (0.2, 100.0, 64, 4, 64),      # GPU: 500 would fit -> the cap
        (250.0, 100.0, 64, 4, 1),     # slower than the budget: one text, never zero
        (10.0, 100.0, 64, 4, 10),     # exactly the budget
        (0.0, 100.0, 64, 4, 4),       # a zero measurement is no measurement
    ],
    ids=["no-budget", "unmeasured", "unmeasured-capped", "cpu", "gpu-capped", "slow-floor", "exact", "zero"],
)
def test_next_size(ms_per_text: float | None, max_call_ms: float | None, max_texts: int, first: int,
                   size: int) -> None:
    assert next_size(ms_per_text, max_call_ms, max_texts, first) == size


def test_the_size_converges_to_a_call_of_about_the_budget_despite_a_fixed_cost_per_call() -> None:
    sizer = CallSizer(max_texts=64, max_call_ms=100.0, alpha=0.5)
    for _ in range(30):  # a backend with 2 ms per call and 10 ms per text
        n = sizer.size()
        sizer.observe((2.0 + 10.0 * n) / 1000, n)
    assert sizer.size() == 9  # 2 + 9 x 10 = 92 ms <= 100 < 2 + 10 x 10
    sizer.observe(1.0, 0)  # no texts: ignored
    assert sizer.size() == 9


@pytest.mark.parametrize(
    ("backend", "flag", "budget"),
    [("serving", None, 100.0), ("triton", None, None), ("torch", None, None),
     ("serving", 0.0, None), ("serving", 40.0, 40.0), ("triton", 250.0, 250.0)],
    ids=["serving-default", "triton-default", "torch-default", "zero-is-off", "serving-set", "triton-set"],
)
def test_call_budget(backend: str, flag: float | None, budget: float | None) -> None:
    assert call_budget_ms(backend, flag) == budget


@pytest.mark.parametrize(("backend", "flag", "calls"),
                         [("serving", None, 1), ("triton", None, 2), ("torch", None, 2), ("serving", 3, 3)],
                         ids=["serving-default", "triton-default", "torch-default", "serving-set"])
def test_calls_in_flight(backend: str, flag: int | None, calls: int) -> None:
    assert calls_in_flight(backend, flag) == calls


class FakeBackend:
    """10 ms a text; records each call and the most calls in flight at once."""

    def __init__(self, fail_on: str | None = None) -> None:
        self.calls: list[list[str]] = []
        self.in_flight = self.most_in_flight = 0
        self.fail_on = fail_on

    async def infer(self, texts: list[str]):  # noqa: ANN201
        self.calls.append(list(texts))
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01 * len(texts))
            if self.fail_on in texts:
                raise RuntimeError(f"model failed on {self.fail_on}")
            return np.array([[float(t[1:]), 0.0] for t in texts], dtype=np.float32), [t for t in texts]
        finally:
            self.in_flight -= 1

    def close(self) -> None:
        pass


def _predictor(backend: FakeBackend, infer_batch: int, inflight: int, max_call_ms: float | None,
               watch: LiveWatch | None = None) -> Predictor:
    p = Predictor.__new__(Predictor)  # no real backend to start
    p.backend, p.inflight, p.rate = backend, inflight, None
    p.sizer = CallSizer(max_texts=infer_batch, max_call_ms=max_call_ms)
    p.watch, p.own_calls, p.full_calls, p._sampling = watch, 0, False, None
    p.model, p.version = "m", "1"
    p.t0, p.rows = time.monotonic(), 0
    return p


@pytest.mark.parametrize(("inflight", "max_call_ms"), [(1, 60.0), (2, 60.0), (3, None)],
                         ids=["one-budget", "two-budget", "three-no-budget"])
def test_predictor_covers_every_text_in_order_within_its_in_flight_bound(inflight: int,
                                                                          max_call_ms: float | None) -> None:
    backend = FakeBackend()
    p = _predictor(backend, infer_batch=16, inflight=inflight, max_call_ms=max_call_ms)
    texts = [f"t{i}" for i in range(100)]
    results = asyncio.run(p._infer_all(texts))
    assert [label for _, labels in results for label in labels] == texts
    assert [row[0] for probs, _ in results for row in probs] == list(range(100))
    assert [t for call in backend.calls for t in call] == texts  # each text sent once, in order
    assert backend.most_in_flight == inflight
    sizes = [len(c) for c in backend.calls]
    if max_call_ms is None:
        assert sizes == [16] * 6 + [4]
    else:  # the first call carries 4 texts, later ones what fits 60 ms at 10 ms a text or more
        # (a sleep never ends early, so every measured cost is >= 10 ms a text: no call above 6 texts;
        # how far below depends on the machine's load, so it is not asserted: the sizer's own
        # convergence is tested above without a clock)
        assert sizes[0] == 4 and max(sizes[1:]) <= 6 and p.sizer.ms_per_text >= 9.9


def test_a_failed_call_fails_the_block_and_cancels_the_calls_still_in_flight() -> None:
    backend = FakeBackend(fail_on="t5")
    p = _predictor(backend, infer_batch=4, inflight=2, max_call_ms=None)
    with pytest.raises(RuntimeError, match="model failed on t5"):
        asyncio.run(p._infer_all([f"t{i}" for i in range(40)]))
    assert backend.in_flight == 0 and len(backend.calls) < 10  # stopped early, nothing left running


# ---- LiveWatch: full calls while nobody else uses the Triton ------------------------------------
@pytest.mark.parametrize(("samples", "now", "live"), [
    ([], 0.0, True),                                            # nothing seen: the budget applies
    ([(0.0, 10, 0)], 0.5, True),                                # one sample is no interval yet
    ([(0.0, 10, 0), (1.0, 13, 3)], 1.0, False),                 # 3 served, all the job's: quiet
    ([(0.0, 10, 0), (1.0, 14, 3)], 1.0, True),                  # one more than the job sent: live
    ([(0.0, 10, 0), (1.0, 13, 3), (2.0, 15, 4)], 2.0, True),    # quiet, then live
    ([(0.0, 10, 0), (1.0, 11, 0), (2.0, 11, 0)], 2.5, True),    # live at 1, quiet at 2: held 5 s
    ([(0.0, 10, 0), (1.0, 11, 0), (2.0, 11, 0)], 6.5, False),   # ... and no longer
    ([(0.0, 10, 0), (1.0, 11, 0)], 30.0, True),                 # live, never a quiet interval since
    ([(0.0, 50, 5), (1.0, 3, 8)], 1.0, True),                   # counter went back: a new Triton
    ([(0.0, 10, 0), (1.0, 12, 3), (2.0, 13, 3)], 2.0, False),   # the job's 3rd call counted late: not live
    ([(0.0, 10, 0), (1.0, 12, 3), (2.0, 14, 3)], 2.0, True),    # ... and one foreign request beside it
], ids=["unseen", "one-sample", "quiet", "live", "quiet-then-live", "held", "released", "never-quiet", "reset",
        "late-count", "late-count-and-live"])
def test_live_watch(samples: list[tuple[float, int, int]], now: float, live: bool) -> None:
    watch = LiveWatch(interval_s=1.0, hold_s=5.0)
    for when, served, own in samples:
        watch.observe(when, served, own)
    assert watch.live(now) is live


def test_live_watch_samples_once_an_interval_and_once_a_hold_after_seeing_live_traffic() -> None:
    watch = LiveWatch(interval_s=1.0, hold_s=5.0)
    assert watch.due(0.0)
    watch.observe(0.0, 0, 0)
    assert not watch.due(0.9) and watch.due(1.0)
    watch.observe(1.0, 0, 0)  # quiet: the next read a second later
    assert watch.due(2.0)
    watch.observe(2.0, 3, 0)  # live: reading again before the hold ends could only extend it
    assert watch.live(2.0) and not watch.due(6.9) and watch.due(7.0)
    watch.observe(7.0, 3, 1)  # quiet again: back to one read a second
    assert not watch.live(7.0) and watch.due(8.0)


@pytest.mark.parametrize(("stats", "served"), [
    ({"model_stats": [{"name": "m", "version": "1", "inference_stats": {"success": {"count": "42", "ns": "9"}}}]}, 42),
    ({"model_stats": [{"name": "m", "version": "1", "inference_stats": {"success": {}}}]}, 0),  # zero is left out
    ({"model_stats": [{"name": "m", "version": "1"}]}, 0),
    ({"model_stats": []}, None),
    ({}, None),
], ids=["count", "zero-omitted", "no-stats-yet", "no-model", "empty"])
def test_served_requests_reads_triton_statistics_json(stats: dict, served: int | None) -> None:
    assert served_requests(stats) == served


class SharedBackend(FakeBackend):
    """A Triton that also serves `live` requests from someone else before each statistics read."""

    def __init__(self, live: list[int]) -> None:
        super().__init__()
        self.served, self.live, self.reads = 0, list(live), 0

    async def infer(self, texts: list[str]):  # noqa: ANN201
        out = await super().infer(texts)
        self.served += 1
        return out

    async def requests_served(self) -> int:
        self.served += self.live[self.reads] if self.reads < len(self.live) else 0
        self.reads += 1
        return self.served


def test_the_job_sends_full_calls_while_alone_and_its_budget_while_live_traffic_is_seen() -> None:
    # Reads: the first (awaited, before any call) sets the base, the second (beside a call) sees a
    # quiet interval, the third live traffic.
    backend = SharedBackend(live=[0, 0, 2])
    p = _predictor(backend, infer_batch=16, inflight=1, max_call_ms=40.0, watch=LiveWatch(interval_s=0.0, hold_s=60))
    asyncio.run(p._infer_all([f"t{i}" for i in range(60)]))
    sizes = [len(c) for c in backend.calls]
    # budgeted calls first (the first of 4), one full call once an interval was quiet, budgeted again
    # after the live requests (40 ms at 10 ms a text or more: at most 4)
    assert sizes[0] == 4 and sizes.count(16) == 1
    after = sizes[sizes.index(16) + 1:]
    assert after and max(after) <= 4
    assert sum(sizes) == 60 and p.own_calls == len(sizes)


def test_a_statistics_read_never_holds_back_the_next_call() -> None:
    class SlowStats(SharedBackend):
        async def requests_served(self) -> int:
            if self.reads:  # every read after the first takes as long as ten calls of one text
                await asyncio.sleep(0.1)
            return await super().requests_served()

    backend = SlowStats(live=[])
    p = _predictor(backend, infer_batch=1, inflight=1, max_call_ms=None, watch=LiveWatch(interval_s=0.0))
    asyncio.run(p._infer_all([f"t{i}" for i in range(20)]))
    # Awaited before each call, there would be 20 reads; beside the calls, a new one starts only when
    # the last has ended, and 20 calls of 10 ms fit in about two reads of 100 ms.
    assert len(backend.calls) == 20 and backend.reads <= 4


def test_without_statistics_the_budget_always_applies() -> None:
    backend = SharedBackend(live=[])

    async def no_stats() -> None:
        return None

    backend.requests_served = no_stats
    p = _predictor(backend, infer_batch=16, inflight=1, max_call_ms=40.0, watch=LiveWatch(interval_s=0.0))
    asyncio.run(p._infer_all([f"t{i}" for i in range(30)]))
    assert p.watch is None and max(len(c) for c in backend.calls) <= 4
