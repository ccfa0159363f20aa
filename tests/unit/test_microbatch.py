"""MicroBatcher: when requests are coalesced, what each gets back, and how failures stay per request."""

from __future__ import annotations

import asyncio

import pytest

from serving.transport.microbatch import MicroBatcher, expected_group

FAIL_MODEL, FAIL_DOWN = ("fail", "model"), ("fail", "unavailable")


class FakeVersion:
    """A downstream version: answers each text with its upper-case form, after `release` is set.

    A text "boom" makes the whole call a model failure (as one bad input breaks a batch);
    `down=True` makes every call fail as unavailable.
    """

    def __init__(self, *, gate: bool = False, down: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        if not gate:
            self.release.set()
        self.down = down

    async def __call__(self, texts: list[str]):  # noqa: ANN204
        self.calls.append(list(texts))
        await self.release.wait()
        if self.down:
            return FAIL_DOWN
        if "boom" in texts:
            return FAIL_MODEL
        return [t.upper() for t in texts]


def make(fake: FakeVersion, **kw: object) -> MicroBatcher:
    """A batcher that sends at once when idle (the window cases below are written for that policy)."""
    kw.setdefault("flush_when_idle", True)
    return MicroBatcher(
        fake, slice_result=lambda r, a, z: r[a:z], is_failure=lambda r: isinstance(r, tuple),
        is_model_failure=lambda r: r == FAIL_MODEL, **kw,
    )


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


def test_idle_request_goes_at_once_without_waiting() -> None:
    async def main() -> None:
        fake = FakeVersion()
        b = make(fake, max_wait_s=10.0)  # a wait this long would time the test out if it applied
        assert await asyncio.wait_for(b.submit(["a", "b"]), 1.0) == ["A", "B"]
        assert fake.calls == [["a", "b"]]

    run(main())


def test_by_default_even_an_idle_batcher_waits_so_simultaneous_requests_share_a_call() -> None:
    async def main() -> None:
        fake = FakeVersion()
        b = make(fake, max_wait_s=0.01, flush_when_idle=False)
        assert await asyncio.gather(b.submit(["a"]), b.submit(["b"])) == [["A"], ["B"]]
        assert fake.calls == [["a", "b"]]  # like Triton's dynamic batcher: one window, one call

    run(main())


def test_requests_arriving_while_busy_share_one_call_and_get_their_own_rows() -> None:
    async def main() -> None:
        fake = FakeVersion(gate=True)
        b = make(fake, max_wait_s=0.01, max_texts=32)
        first = asyncio.create_task(b.submit(["x"]))
        await asyncio.sleep(0)  # the first call is now in flight
        rest = [asyncio.create_task(b.submit([f"t{i}", f"u{i}"])) for i in range(3)]
        await asyncio.sleep(0.05)  # past max_wait: the waiting three were flushed as one call
        fake.release.set()
        assert await first == ["X"]
        assert [await r for r in rest] == [["T0", "U0"], ["T1", "U1"], ["T2", "U2"]]
        assert fake.calls == [["x"], ["t0", "u0", "t1", "u1", "t2", "u2"]]
        assert (b.stats.calls, b.stats.requests, b.stats.texts) == (2, 4, 7)

    run(main())


@pytest.mark.parametrize(
    ("max_texts", "sizes", "expected_calls"),
    [
        (4, [1, 1, 1, 1], [[1], [1, 1, 1]]),  # 3 waiting (< 4): one call after max_wait
        (2, [1, 1, 1, 1, 1], [[1], [1, 1], [1, 1]]),  # full at 2: sent without waiting
        (3, [1, 2, 2], [[1], [2], [2]]),  # never split a request: 2+2 > 3 opens the next batch
        (3, [1, 5], [[1], [5]]),  # a request larger than max_texts still goes, alone
    ],
)
def test_batch_boundaries(max_texts: int, sizes: list[int], expected_calls: list[list[int]]) -> None:
    async def main() -> None:
        fake = FakeVersion(gate=True)
        # A window far longer than the loop turns between submissions, so a stalled CI machine cannot
        # close it early and split the groups (the 20 ms window used before could).
        b = make(fake, max_wait_s=0.3, max_texts=max_texts)
        tasks = []
        for i, n in enumerate(sizes):
            tasks.append(asyncio.create_task(b.submit([f"r{i}"] * n)))
            await asyncio.sleep(0)
        await asyncio.sleep(0.5)
        fake.release.set()
        results = await asyncio.gather(*tasks)
        assert results == [[f"R{i}"] * n for i, n in enumerate(sizes)]
        # Which requests shared a call: group the texts of each call by request.
        grouped = [[c.count(f"r{i}") for i in range(len(sizes)) if f"r{i}" in c] for c in fake.calls]
        assert grouped == expected_calls

    run(main())


def test_model_failure_in_a_batch_fails_only_the_request_that_caused_it() -> None:
    async def main() -> None:
        fake = FakeVersion(gate=True)
        b = make(fake, max_wait_s=0.01)
        first = asyncio.create_task(b.submit(["ok0"]))
        await asyncio.sleep(0)
        good1 = asyncio.create_task(b.submit(["ok1"]))
        bad = asyncio.create_task(b.submit(["boom"]))
        good2 = asyncio.create_task(b.submit(["ok2", "ok3"]))
        await asyncio.sleep(0.03)
        fake.release.set()
        assert await first == ["OK0"]
        assert await good1 == ["OK1"]
        assert await bad == FAIL_MODEL
        assert await good2 == ["OK2", "OK3"]
        assert b.stats.split_retries == 1
        # the shared call, then each of its requests alone
        assert fake.calls[1] == ["ok1", "boom", "ok2", "ok3"]
        assert sorted(map(tuple, fake.calls[2:])) == [("boom",), ("ok1",), ("ok2", "ok3")]

    run(main())


def test_unavailable_goes_to_every_request_of_the_batch_without_resending() -> None:
    async def main() -> None:
        fake = FakeVersion(gate=True, down=True)
        b = make(fake, max_wait_s=0.01)
        tasks = [asyncio.create_task(b.submit([f"t{i}"])) for i in range(3)]
        await asyncio.sleep(0.03)
        fake.release.set()
        assert await asyncio.gather(*tasks) == [FAIL_DOWN] * 3
        assert len(fake.calls) == 2  # t0 alone, then t1+t2; no per-request re-send

    run(main())


def test_exception_in_the_call_reaches_every_waiter_and_the_batcher_keeps_working() -> None:
    async def main() -> None:
        calls = 0

        async def flaky(texts: list[str]) -> list[str]:
            nonlocal calls
            calls += 1
            if calls == 1:
                raise ConnectionError("replica died")
            return texts

        b = MicroBatcher(flaky, slice_result=lambda r, a, z: r[a:z], is_failure=lambda r: False,
                         is_model_failure=lambda r: False)
        with pytest.raises(ConnectionError):
            await b.submit(["a"])
        assert await b.submit(["b"]) == ["b"]
        assert b.inflight == 0

    run(main())


@pytest.mark.parametrize(("kw", "message"), [({"max_texts": 0}, "max_texts"), ({"max_wait_s": -1}, "max_wait_s")])
def test_bad_settings_are_refused_naming_the_value(kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make(FakeVersion(), **kw)


def test_paced_sends_a_lone_request_at_once_when_the_last_call_carried_one() -> None:
    async def main() -> None:
        fake = FakeVersion()
        b = make(fake, max_wait_s=10.0, max_inflight=1, flush_when_idle=False)
        for t in ("a", "b", "c"):  # c=1 closed loop: never waits for a partner
            assert await asyncio.wait_for(b.submit([t]), 1.0) == [t.upper()]
        assert fake.calls == [["a"], ["b"], ["c"]]

    run(main())


def test_paced_waits_for_the_clients_of_the_returning_call_and_merges_split_groups() -> None:
    """c=4 closed loop split 2+2 across two calls: pacing merges them into one call of 4."""
    async def main() -> None:
        fake = FakeVersion(gate=True)
        b = make(fake, max_wait_s=5.0, max_inflight=1, flush_when_idle=False)
        group_a = [asyncio.create_task(b.submit([t])) for t in ("a1", "a2")]
        await asyncio.sleep(0.01)
        # expect starts at 1: a1 went alone, a2 waits for the call in flight (cap 1)
        assert fake.calls == [["a1"]]
        group_b = [asyncio.create_task(b.submit([t])) for t in ("b1", "b2")]
        await asyncio.sleep(0.01)
        assert fake.calls == [["a1"]]  # held while the one Triton is busy
        fake.release.set()
        assert await group_a[0] == ["A1"]
        await asyncio.sleep(0.01)
        # a1 returned: a2, b1, b2 waited; expect = 3 waiting + 1 returning -> they wait for a1's client
        assert fake.calls == [["a1"]]
        again = asyncio.create_task(b.submit(["a1again"]))
        results = await asyncio.wait_for(asyncio.gather(*group_a[1:], *group_b, again), 2.0)
        assert results == [["A2"], ["B1"], ["B2"], ["A1AGAIN"]]
        assert fake.calls[1] == ["a2", "b1", "b2", "a1again"]

    run(main())


def test_paced_wait_is_bounded_by_max_wait() -> None:
    async def main() -> None:
        fake = FakeVersion(gate=True)
        b = make(fake, max_wait_s=0.05, max_inflight=1, flush_when_idle=False)
        first = asyncio.create_task(b.submit(["x"]))
        await asyncio.sleep(0.01)
        held = asyncio.create_task(b.submit(["y"]))  # held: the one Triton is busy
        await asyncio.sleep(0.01)
        loop = asyncio.get_running_loop()
        fake.release.set()
        await first
        returned = loop.time()
        # y now waits for x's client (expect 2), which never comes: max_wait ends the wait
        assert await asyncio.wait_for(held, 2.0) == ["Y"]
        assert loop.time() - returned >= 0.04
        assert fake.calls == [["x"], ["y"]]

    run(main())


def test_paced_without_a_cap_is_the_plain_window() -> None:
    async def main() -> None:
        fake = FakeVersion()
        b = make(fake, max_wait_s=0.01, max_inflight=lambda: None, flush_when_idle=False)
        assert await asyncio.gather(b.submit(["a"]), b.submit(["b"])) == [["A"], ["B"]]
        assert fake.calls == [["a", "b"]]  # one window, one call (pacing would have sent "a" alone)

    run(main())


@pytest.mark.parametrize(("cap", "calls_before_release"), [(1, [["a"]]), (2, [["a"], ["b"]])],
                         ids=["one-call-per-instance", "two-calls-per-instance"])
def test_paced_holds_requests_only_once_cap_calls_are_in_flight(cap: int, calls_before_release: list) -> None:
    """calls_per_instance=2: the next batch is already inside Triton while one executes."""
    async def main() -> None:
        fake = FakeVersion(gate=True)
        b = make(fake, max_wait_s=0.0, max_inflight=cap, flush_when_idle=False)
        tasks = []
        for t in ("a", "b", "c"):
            tasks.append(asyncio.create_task(b.submit([t])))
            await asyncio.sleep(0.01)
        assert fake.calls == calls_before_release  # the rest held until a call returns
        fake.release.set()
        assert await asyncio.wait_for(asyncio.gather(*tasks), 2.0) == [["A"], ["B"], ["C"]]

    run(main())


def test_calls_per_instance_multiplies_the_local_model_instances() -> None:
    from serving.transport.transport import _times

    assert [_times(None, 2), _times(1, 1), _times(1, 2), _times(3, 2)] == [None, 1, 2, 6]


def _closed_loop_call_sizes(cap: int, clients: int = 16, rounds: int = 12) -> list[int]:
    """Texts per call when `clients` closed-loop clients (one text each, no think time) share a batcher
    in front of one model instance that runs calls one after another (20 ms each), `cap` calls in flight."""
    async def main() -> list[int]:
        sizes: list[int] = []
        instance = asyncio.Lock()

        async def triton(texts: list[str]) -> list[str]:
            sizes.append(len(texts))
            async with instance:
                await asyncio.sleep(0.02)
            return [t.upper() for t in texts]

        b = make(triton, max_wait_s=0.05, max_inflight=cap, flush_when_idle=False)

        async def client(i: int) -> None:
            for _ in range(rounds):
                assert await b.submit([f"c{i}"]) == [f"C{i}"]

        await asyncio.wait_for(asyncio.gather(*(client(i) for i in range(clients))), 30)
        return sizes

    return run(main())


@pytest.mark.parametrize(("cap", "group"), [(1, 16), (2, 8), (4, 4)])
def test_paced_calls_settle_into_even_groups_one_per_call_in_flight(cap: int, group: int) -> None:
    """With two calls per Triton the next call waits inside Triton while one executes; each should carry
    half the clients. Counting only the call returning (as before) let a 15 + 1 split persist, so the
    second call carried one text and the model never ran the batches that pipelining was for."""
    sizes = _closed_loop_call_sizes(cap)
    settled = sizes[len(sizes) // 2:]
    assert sum(settled) / len(settled) >= group - 1, sizes
    assert min(settled) >= group // 2, sizes


@pytest.mark.parametrize(("waiting", "in_flight", "returning", "cap", "expect"), [
    (0, 0, 16, 1, 16),  # one call at a time: wait for every client of the returning call
    (3, 0, 1, 1, 4),  # ... and for those already waiting
    (0, 8, 8, 2, 8),  # two at a time, even: the returning call's clients are the next call
    (0, 15, 1, 2, 8),  # 15 + 1: the lone client waits for half, so the groups even out
    (7, 8, 1, 2, 8),
    (0, 0, 1, 2, 1),  # one client alone never waits for others
    (0, 0, 0, 2, 1),
    (1, 2, 2, 4, 2),  # ceil(5 / 4)
])
def test_expected_group(waiting: int, in_flight: int, returning: int, cap: int, expect: int) -> None:
    assert expected_group(waiting, in_flight, returning, cap) == expect
