"""Length-aware micro-batching: which waiting requests share a call (a table), and the batcher using it."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from serving.config import BatchingSettings
from serving.transport.microbatch import Pending, estimate_tokens, take_group
from tests.unit.test_microbatch import FakeVersion, make


def P(texts: int, longest: int, age_s: float = 0.0) -> Pending:  # noqa: N802 - reads like a table row
    return Pending(texts, longest, age_s)


@pytest.mark.parametrize(
    ("waiting", "max_texts", "max_tokens", "expect"),
    [
        ([P(1, 10), P(1, 10), P(1, 10)], 32, 1000, [0, 1, 2]),      # 3 x 10 = 30 <= 1000: all
        ([P(1, 10), P(1, 200), P(1, 10), P(1, 10)], 32, 100, [0, 2, 3]),  # shorts: 3 x 10 = 30; +long: 4 x 200 > 100
        ([P(1, 10), P(1, 200, age_s=0.05), P(1, 10)], 32, 100, [1]),  # overdue long first: 200; +short: 2 x 200 > 100
        ([P(1, 30), P(1, 60), P(1, 20)], 32, 100, [0, 2]),           # 20, then 2 x 30 = 60, then 3 x 60 = 180 > 100
        ([P(2, 5), P(2, 5), P(2, 5)], 4, 1000, [0, 1]),              # texts cap: 2 + 2 = 4; +2 = 6 > 4
        ([P(1, 500)], 32, 100, [0]),                                  # too long alone: still goes, alone
        ([P(1, 8), P(1, 8), P(1, 8)], 32, 16, [0, 1]),               # ties in arrival order: 2 x 8 = 16; 3 x 8 > 16
        ([P(3, 10), P(1, 40)], 32, 160, [0, 1]),                     # padded to the longest: 4 x 40 = 160
        ([P(1, 40, 0.03), P(1, 10, 0.03), P(1, 5)], 32, 80, [0, 1]),  # overdue in arrival order: 40, 2 x 40; +5: 3 x 40 > 80
    ],
    ids=["all-fit", "long-waits-for-next-call", "overdue-long-goes-first", "skip-then-shorter-fits",
         "max-texts", "oversized-alone", "ties-fifo", "padded-to-longest", "overdue-fifo-before-short"],
)
def test_take_group(waiting: list[Pending], max_texts: int, max_tokens: int, expect: list[int]) -> None:
    assert take_group(waiting, max_texts, max_tokens, max_age_s=0.02) == expect


@pytest.mark.parametrize(("text", "tokens"), [("", 2), ("abcd", 3), ("abcde", 4), ("x" * 400, 102)],
                         ids=["empty", "four-chars", "five-chars", "long"])
def test_token_estimate_is_chars_over_four_plus_specials(text: str, tokens: int) -> None:
    assert estimate_tokens(text) == tokens


LONG = "x" * 400  # 102 tokens


@pytest.mark.parametrize(
    ("max_tokens", "calls"),
    [(None, [["a", LONG, "c", "d"]]),        # off: today's behaviour, one call in arrival order
     (64, [["a", "c", "d"], [LONG]])],       # on: 3 x 3 = 9 <= 64; the long one (102 tokens) goes alone
    ids=["off", "on"],
)
def test_a_long_text_does_not_make_short_ones_pad_to_it(max_tokens: int | None, calls: list) -> None:
    async def main() -> None:
        fake = FakeVersion()
        b = make(fake, max_wait_s=10.0, max_texts=4, flush_when_idle=False, max_tokens=max_tokens,
                 max_reorder_s=60.0)  # no request counts as overdue however slow the machine
        got = await asyncio.gather(*(b.submit([t]) for t in ["a", LONG, "c", "d"]))  # the 4th fills max_texts
        assert got == [["A"], [LONG.upper()], ["C"], ["D"]]  # every request its own rows
        assert fake.calls == calls
        assert b.stats.calls == len(calls) and b.stats.requests == 4

    asyncio.run(main())


def test_paced_length_aware_holds_what_does_not_fit_until_a_call_returns() -> None:
    async def main() -> None:
        fake = FakeVersion(gate=True)
        # max_reorder_s: held requests must not turn overdue (overdue ones go in arrival order, a table
        # case above) while a loaded CI machine is slow to run the first call back.
        b = make(fake, max_wait_s=0.01, max_texts=4, flush_when_idle=False, max_inflight=1, max_tokens=64,
                 max_reorder_s=60.0)
        tasks = [asyncio.create_task(b.submit([t])) for t in ["a", LONG, "c", "d"]]
        for _ in range(3):
            await asyncio.sleep(0)
        assert fake.calls == [["a"]] and b.inflight == 1  # paced: the first goes alone, the rest are held
        await asyncio.sleep(0.05)  # as a slow machine would: older than the default max_reorder_s (0.02)
        fake.release.set()
        assert await asyncio.gather(*tasks) == [["A"], [LONG.upper()], ["C"], ["D"]]
        # Released together; short ones first, and the long one only once the single Triton is free again.
        assert fake.calls == [["a"], ["c", "d"], [LONG]]

    asyncio.run(main())


@pytest.mark.parametrize("bad", [0, 15, 2_000_000], ids=["zero", "below-16", "huge"])
def test_bad_max_tokens_per_call_is_quoted(bad: int) -> None:
    with pytest.raises(ValidationError, match=f"got {bad}"):
        BatchingSettings(max_tokens_per_call=bad)


def test_length_aware_batching_is_off_by_default() -> None:
    assert BatchingSettings().max_tokens_per_call is None
