"""Load shedding: the admission decision as a table, and the transport under a burst (no clock)."""

from __future__ import annotations

import asyncio
import pickle

import numpy as np
import pytest
from pydantic import ValidationError

from serving.config import BatchingSettings, SheddingSettings
from serving.dataplane import DataPlane
from serving.errors import ApiError
from serving.metrics import Metrics
from serving.state import TrafficTable
from serving.transport.admission import Overloaded, VersionQueue, decide, queue_limit
from serving.transport.transport import Transport
from serving.triton import codec
from tests.unit.test_dataplane import FakeView

BASE = {"slo_ms": 500.0, "min_queue": 8, "max_queue": 100, "parallel": 1}


@pytest.mark.parametrize(
    ("kw", "admit", "limit", "retry"),
    [
        ({"queued": 0, "texts": 5000, "ms_per_text": 10.0}, True, 50, 0),   # empty queue: always servable
        ({"queued": 99, "texts": 50, "ms_per_text": None}, True, 100, 0),   # unmeasured: max_queue; 99 < 100
        ({"queued": 100, "texts": 1, "ms_per_text": None}, False, 100, 1),  # 100 ahead: full; drain unknown -> 1 s
        ({"queued": 49, "texts": 1, "ms_per_text": 10.0}, True, 50, 0),     # 500 ms x 1 / 10 ms = 50; 49 < 50
        ({"queued": 50, "texts": 1, "ms_per_text": 10.0}, False, 50, 1),    # 50 ahead: full; drain 500 ms -> 1 s
        ({"queued": 40, "texts": 64, "ms_per_text": 10.0}, True, 50, 0),    # bigger than the limit: its wait counts
        ({"queued": 103, "texts": 1, "ms_per_text": 10.0}, False, 50, 2),   # ... and everyone after waits for it
        ({"queued": 90, "texts": 10, "ms_per_text": 10.0, "parallel": 2}, True, 100, 0),  # 500x2/10 = 100
        ({"queued": 8, "texts": 1, "ms_per_text": 1000.0}, False, 8, 8),    # 500/1000 = 0 -> floor 8; 8 s to drain
        ({"queued": 99, "texts": 1, "ms_per_text": 0.01}, True, 100, 0),    # 50000 -> ceiling 100
        ({"queued": 150, "texts": 1, "ms_per_text": 20.0, "slo_ms": 2000.0}, False, 100, 3),  # drain 3000 ms -> 3 s
        ({"queued": 20, "texts": 5, "ms_per_text": 10.0, "shadow": True}, True, 50, 0),   # shadow bound 25
        ({"queued": 21, "texts": 5, "ms_per_text": 10.0, "shadow": True}, False, 50, 1),  # 26 > 25: shadow shed
        ({"queued": 21, "texts": 5, "ms_per_text": 10.0}, True, 50, 0),     # the same load from a user: admitted
        ({"queued": 1, "texts": 64, "ms_per_text": 10.0, "shadow": True}, False, 50, 1),  # a big copy must fit too
    ],
    ids=["empty-admits-anything", "unmeasured-below", "unmeasured-full", "one-below", "full",
         "oversized-admitted-below-the-limit", "oversized-counts-for-those-after", "two-tritons-double",
         "floor", "ceiling", "retry-after-rounds-up", "shadow-under-half", "shadow-over-half-shed",
         "user-same-load-admitted", "oversized-shadow-shed"],
)
def test_admission_decision(kw: dict, admit: bool, limit: int, retry: int) -> None:
    args = {**BASE, "shadow": False, **kw}
    d = decide(**args)
    assert (d.admit, d.limit, d.retry_after_s) == (admit, limit, retry)


def test_queue_limit_is_unbounded_only_up_to_the_ceiling_before_a_measurement() -> None:
    assert queue_limit(500, None, 1, 8, 64) == 64
    assert queue_limit(500, 0.0, 1, 8, 64) == 64


def test_service_time_is_an_ewma_of_ms_per_text() -> None:
    q = VersionQueue()
    q.observe_call(0.100, 10, alpha=0.5)  # 10 ms/text: the first sample is the average
    assert q.ms_per_text == pytest.approx(10.0)
    q.observe_call(0.060, 2, alpha=0.5)  # 30 ms/text: 0.5 x 30 + 0.5 x 10 = 20
    assert q.ms_per_text == pytest.approx(20.0)
    q.observe_call(1.0, 0, alpha=0.5)  # no texts: ignored
    assert q.ms_per_text == pytest.approx(20.0)


@pytest.mark.parametrize(
    ("calls", "ms_per_text", "provisional"),
    [([(0.059, 1)], 59 / 8, True),                      # a 1-text call, spread over 8 texts: 7.4 ms
     ([(0.059, 1), (0.040, 4)], 0.2 * 5 + 0.8 * 59 / 8, True),  # small calls average among themselves (40 / 8)
     ([(0.059, 1), (0.080, 40)], 2.0, False),           # the first full call replaces the provisional estimate
     ([(0.080, 40), (0.008, 1)], 2.0, False),           # ... after it a small call consistent with it is no news:
                                                        #     a 40-text call costs 8 / 40 to 8 / 1 ms a text
     ([(0.016, 8), (0.080, 4)], 0.2 * 8 + 0.8 * 2.0, False),    # 8-text calls: >= 80 / 8 = 10 > 2; up (capped 4x)
     ([(0.400, 40), (0.024, 4)], 0.2 * 6 + 0.8 * 10, False),    # <= 24 / 4 = 6 < 10: faster; moves down to 6
     ([(0.0064, 64), (0.005, 1)], 0.1, False),          # batches well: a 5 ms 1-text call is >= 5 / 64 ms; no news
     ([(0.080, 40), (0.120, 8)], 0.2 * 8 + 0.8 * 2.0, False),   # full calls: the EWMA of ms per text (x4 cap)
     ([(0.080, 8), (0.040, 8)], 0.2 * 5 + 0.8 * 10, False),
     ([(1.0, 0)], None, False)],                        # no texts: ignored
    ids=["one-small", "smalls-average", "full-replaces", "small-consistent-ignored", "small-proves-slower",
         "small-proves-faster", "idle-calls-of-a-batching-model", "full-capped",
         "full-ewma", "empty"],
)
def test_which_calls_size_the_estimate(calls: list[tuple[float, int]], ms_per_text: float | None,
                                       provisional: bool) -> None:
    q = VersionQueue()
    for seconds, texts in calls:
        q.observe_call(seconds, texts, alpha=0.2, min_texts=8)
    assert q.ms_per_text == (None if ms_per_text is None else pytest.approx(ms_per_text))
    assert q.provisional == provisional


def test_one_slow_call_cannot_collapse_the_bound_but_a_lasting_slowdown_is_followed() -> None:
    q = VersionQueue()
    q.observe_call(0.040, 40, alpha=0.2, min_texts=8)  # 1 ms/text
    q.observe_call(2.0, 8, alpha=0.2, min_texts=8)  # a 250 ms/text stall counts as 4 x 1 ms
    assert q.ms_per_text == pytest.approx(0.2 * 4.0 + 0.8 * 1.0)
    for _ in range(10):  # a lasting 10x slowdown is still followed
        q.observe_call(0.080, 8, alpha=0.2, min_texts=8)
    assert q.ms_per_text > 8.0


def test_a_version_whose_calls_stay_small_still_follows_a_slowdown_and_a_recovery() -> None:
    """Under a tight bound calls stay small after the first full ones; a version that gets 3x slower
    (14 -> 42 ms a text on CPU) must still be followed, or its bound stays 3x too loose, and so must
    its recovery, or the bound stays too tight."""
    q = VersionQueue()
    q.observe_call(0.112, 8, alpha=0.2, min_texts=8)  # 14 ms/text
    for _ in range(20):
        q.observe_call(0.168, 4, alpha=0.2, min_texts=8)  # 4 texts at 42 ms: 168 / 8 = 21 ms, a lower bound
    assert q.ms_per_text == pytest.approx(21.0, rel=0.01)
    for _ in range(20):  # back to 14 ms a text: 56 ms calls of 4 put a full call between 7 and 14 ms a text
        q.observe_call(0.056, 4, alpha=0.2, min_texts=8)
    assert q.ms_per_text == pytest.approx(14.0, rel=0.01)
    for _ in range(5):  # overhead-bound calls (1 text in 14 ms) are consistent with it: no news
        q.observe_call(0.014, 1, alpha=0.2, min_texts=8)
    assert q.ms_per_text == pytest.approx(14.0, rel=0.01)


def test_a_version_seen_only_on_small_calls_is_bounded_when_overload_comes() -> None:
    """Seen in the shedding benchmark (slo_ms 40): with small calls unmeasured, a version that had only
    served 1-4 text calls was unbounded (max_queue) when overload came, and its first wave queued."""
    q = VersionQueue()
    for _ in range(5):
        q.observe_call(0.056, 4, alpha=0.2, min_texts=8)  # 14 ms/text on CPU, calls of 4
    limit = queue_limit(40, q.ms_per_text, 2, 4, 1024)
    assert limit == 11  # 80 / 7 ms: bounded (errs on the side of admitting), not 1024


@pytest.mark.parametrize(
    ("batching", "max_texts", "texts", "measured"),
    [(True, 32, 1, False), (True, 32, 8, True), (True, 4, 4, True), (False, 32, 1, True)],
    ids=["small-call", "big-enough", "the-batchers-biggest-call", "batching-off-every-call"],
)
def test_which_calls_size_the_bound(batching: bool, max_texts: int, texts: int, measured: bool) -> None:
    """measured: the call counts in full (ms / texts); otherwise it gives a provisional estimate."""
    async def main() -> None:
        t = GatedTransport(SheddingSettings(enabled=True, min_call_texts=8), batching)
        t.batching = BatchingSettings(enabled=batching, max_wait_ms=0, max_texts=max_texts)
        t.release.set()
        await t.infer("m", "1", [f"t{i}" for i in range(texts)])
        q = t.queues[("m", "1")]
        assert q.ms_per_text is not None and q.provisional == (not measured)

    asyncio.run(main())


def test_a_burst_after_single_text_calls_is_admitted() -> None:
    """Seen in CI (test_rollback_under_load): after a few slow 1-text calls, a 50-client burst was
    bounded at 34 texts. Small calls no longer size the bound."""
    async def main() -> None:
        t = GatedTransport(SheddingSettings(enabled=True, slo_ms=2000, max_queue=1024))
        for i in range(3):  # 1-text calls of at least 60 ms each: "60 ms a text" would bound it at 33
            warm = asyncio.create_task(t.infer("m", "1", [f"warm {i}"]))
            await asyncio.sleep(0.06)
            t.release.set()
            await warm
            t.release.clear()
        burst = [asyncio.create_task(t.infer("m", "1", [f"u{i}"])) for i in range(50)]
        await asyncio.sleep(0)
        assert not any(x.done() for x in burst)  # all 50 admitted, none refused
        t.release.set()
        assert len(await asyncio.gather(*burst)) == 50 and shed_count(t.metrics, "user") == 0

    asyncio.run(main())


@pytest.mark.parametrize(
    ("kw", "needle"),
    [({"slo_ms": 0}, "slo_ms must be between 1 and 600000, got 0"),
     ({"min_queue": 10, "max_queue": 5}, "min_queue=10, max_queue=5"),
     ({"ewma_alpha": 1.5}, "ewma_alpha must be in (0, 1], got 1.5")],
    ids=["slo", "floor-above-ceiling", "alpha"],
)
def test_bad_shedding_settings_are_quoted(kw: dict, needle: str) -> None:
    with pytest.raises(ValidationError, match=needle.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        SheddingSettings(**kw)


def test_overloaded_pickles_and_names_the_version() -> None:
    e = pickle.loads(pickle.dumps(Overloaded("m", "3", 2, 40, 40)))  # noqa: S301 - our own object
    assert (e.version, e.retry_after_s) == ("3", 2) and "version 3 of model 'm'" in str(e)


# ---- the transport under a burst: a fake downstream that answers only when released -------------
class GatedTransport(Transport):
    def __init__(self, shedding: SheddingSettings, batching: bool = True) -> None:
        super().__init__(BatchingSettings(enabled=batching, max_wait_ms=0), Metrics(), shedding=shedding)
        self.release, self.release_v2 = asyncio.Event(), asyncio.Event()  # every version / version 2 only
        self.texts_sent = 0

    async def _call_once(self, model: str, version: str, texts: list[str]):  # noqa: ANN202
        await (self.release_v2 if version == "2" else self.release).wait()
        self.texts_sent += len(texts)
        return np.zeros((len(texts), 2), dtype=np.float32), ["positive"] * len(texts)


def shed_count(metrics: Metrics, source: str) -> float:
    return metrics.registry.get_sample_value("distilserve_shed_requests_total",
                                             {"model": "m", "version": "1", "source": source}) or 0.0


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "direct"])
def test_a_burst_past_the_bound_is_refused_at_once_and_every_admitted_one_succeeds(batching: bool) -> None:
    async def main() -> None:
        t = GatedTransport(SheddingSettings(enabled=True, min_queue=4, max_queue=4, min_call_texts=1), batching)
        tasks = [asyncio.create_task(t.infer("m", "1", [f"t{i}"])) for i in range(10)]
        await asyncio.sleep(0)  # every request has reached admission; the downstream is still blocked
        refused = [x for x in tasks if x.done()]
        assert len(refused) == 6 and all(isinstance(x.exception(), Overloaded) for x in refused)
        assert t.texts_sent == 0 and t.queues[("m", "1")].queued == 4  # refused before any answer came
        assert tasks.index(refused[0]) == 4  # first come, first admitted
        t.release.set()
        admitted = await asyncio.gather(*[x for x in tasks if x not in refused])
        assert len(admitted) + len(refused) == 10 and all(r[1] == ["positive"] for r in admitted)
        assert t.texts_sent == 4 and t.queues[("m", "1")].queued == 0
        assert shed_count(t.metrics, "user") == 6 and shed_count(t.metrics, "shadow") == 0
        assert t.queues[("m", "1")].ms_per_text is not None  # the admitted calls were measured

    asyncio.run(main())


def test_a_request_bigger_than_the_limit_is_admitted_while_others_are_served() -> None:
    """Before 2026-12-02 a request was charged its own texts, so one bigger than the limit was
    admitted only to an empty queue: refused whenever anyone else was being served."""
    async def main() -> None:
        t = GatedTransport(SheddingSettings(enabled=True, min_queue=4, max_queue=4))
        small = asyncio.create_task(t.infer("m", "1", ["s0"]))
        await asyncio.sleep(0)
        big = asyncio.create_task(t.infer("m", "1", [f"b{i}" for i in range(10)]))  # 1 ahead < 4: admitted
        await asyncio.sleep(0)
        assert not big.done() and t.queues[("m", "1")].queued == 11
        after = asyncio.create_task(t.infer("m", "1", ["s1"]))  # 11 ahead: refused until it drains
        await asyncio.sleep(0)
        assert isinstance(after.exception(), Overloaded) and after.exception().queued == 11
        t.release.set()
        assert len((await big)[1]) == 10 and (await small)[1] == ["positive"]
        assert t.queues[("m", "1")].queued == 0 and shed_count(t.metrics, "user") == 1

    asyncio.run(main())


def test_shadow_copies_are_shed_before_users() -> None:
    async def main() -> None:
        t = GatedTransport(SheddingSettings(enabled=True, min_queue=4, max_queue=4))
        users = [asyncio.create_task(t.infer("m", "1", [f"u{i}"])) for i in range(2)]
        await asyncio.sleep(0)
        shadow = asyncio.create_task(t.infer("m", "1", ["s"], shadow=True))  # 2 + 1 > 4 // 2
        user = asyncio.create_task(t.infer("m", "1", ["u2"]))  # 3 <= 4
        await asyncio.sleep(0)
        assert isinstance(shadow.exception(), Overloaded) and not user.done()
        t.release.set()
        await asyncio.gather(*users, user)
        assert (shed_count(t.metrics, "shadow"), shed_count(t.metrics, "user")) == (1, 0)

    asyncio.run(main())


def test_shedding_off_admits_everything() -> None:
    async def main() -> None:
        t = GatedTransport(SheddingSettings(enabled=False, min_queue=1, max_queue=1))
        tasks = [asyncio.create_task(t.infer("m", "1", ["x"])) for _ in range(5)]
        await asyncio.sleep(0)
        assert not any(x.done() for x in tasks) and t.queues == {}
        t.release.set()
        assert len(await asyncio.gather(*tasks)) == 5

    asyncio.run(main())


def test_the_data_plane_renders_overload_as_429_with_retry_after_and_sheds_shadows_quietly() -> None:
    async def main() -> None:
        view = FakeView(tables={"m": TrafficTable(weights={"1": 100.0}, shadow_version="2", shadow_share=100.0)})
        t = GatedTransport(SheddingSettings(enabled=True, min_queue=1, max_queue=1))
        plane = DataPlane(view, t, t.metrics, codec.Limits())
        first = asyncio.create_task(plane.infer("m", None, None, ["a"], route="v1", request_id="r1"))
        await asyncio.sleep(0)
        with pytest.raises(ApiError) as err:
            await plane.infer("m", None, None, ["b"], route="v1", request_id="r2")
        assert err.value.status == 429 and err.value.headers == {"Retry-After": "1"}
        assert "version 1 of model 'm'" in err.value.message
        t.release.set()
        t.release_v2.set()
        await first
        await asyncio.gather(*plane._tasks)  # the shadow copy to version 2 (its queue is empty: admitted)
        sample = t.metrics.registry.get_sample_value
        assert sample("distilserve_requests_total", {"model": "m", "version": "1", "route": "v1", "code": "429"}) == 1
        assert sample("distilserve_shadow_requests_total", {"model": "m", "version": "2", "outcome": "ok"}) == 1

    asyncio.run(main())


def test_a_shed_shadow_copy_is_counted_and_never_reaches_the_user() -> None:
    async def main() -> None:
        view = FakeView(tables={"m": TrafficTable(weights={"1": 100.0}, shadow_version="2", shadow_share=100.0)})
        t = GatedTransport(SheddingSettings(enabled=True, min_queue=2, max_queue=2))  # shadows: 2 // 2 = 1
        plane = DataPlane(view, t, t.metrics, codec.Limits())
        busy = asyncio.create_task(plane.infer("m", "2", None, ["x"], route="v1", request_id="r0"))  # v2: 1 queued
        await asyncio.sleep(0)
        t.release.set()  # version 1 answers; version 2 stays busy
        live = await plane.infer("m", None, None, ["a"], route="v1", request_id="r1")  # shadow copy: 1 + 1 > 1
        assert live.version == "1" and live.labels == ["positive"]
        await asyncio.gather(*plane._tasks)
        t.release_v2.set()
        await busy
        sample = t.metrics.registry.get_sample_value
        assert sample("distilserve_shadow_requests_total", {"model": "m", "version": "2", "outcome": "shed"}) == 1
        assert shed_count(t.metrics, "user") == 0
        assert sample("distilserve_shed_requests_total", {"model": "m", "version": "2", "source": "shadow"}) == 1

    asyncio.run(main())
