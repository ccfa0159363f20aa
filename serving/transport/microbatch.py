"""Micro-batching at the ingress: concurrent requests to one version share one downstream call.

Every hop behind the ingress (the Ray handle call, the replica, the gRPC call into Triton,
the Python-backend stub) costs CPU per call, not per text. On a busy ingress, requests for
the same model version that arrive within a few milliseconds are therefore sent as one call,
and each request gets back its own slice of the answer.

Two policies, both free of I/O so they can be tested as tables of cases:
- plain window: requests gather until `max_texts` texts wait or `max_wait_s` passed since the
  first of them (with `flush_when_idle`, a request goes at once when no call is in flight);
- paced, when the caller knows how many calls the backend runs at once (`max_inflight`, e.g. one
  per same-node Triton): send when a call's share of the clients waits (closed-loop clients come
  back together; with two calls at once, half of them: `expected_group`), at most `max_wait_s`
  after the first, and hold requests while that many calls are in flight.
Length-aware (`max_tokens_per_call`, off by default): a call carries requests only while
n_texts x longest token estimate stays within the cap, taking waiting requests shortest first
(those older than `max_reorder_s` first of all, in arrival order), so one long text does not make
fifteen short ones pad to its length (`take_group`). The token count is estimated from characters
(`estimate_tokens`: the ingress has no tokenizer). What does not fit stays waiting for the next call.
In all, a request is never split: one whose texts do not fit the current batch opens the next
one; a batch that fails as a model fault ("model", HTTP 500) is re-sent request by request, so
only the request that broke the model fails; any other failure goes to every request of the
batch (the caller retries unavailability itself).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

R = TypeVar("R")


def estimate_tokens(text: str) -> int:
    """Tokens of a text for a WordPiece/BPE tokenizer, roughly: 4 characters a token, plus [CLS] and [SEP]."""
    return (len(text) + 3) // 4 + 2


@dataclass(frozen=True)
class Pending:
    """What `take_group` needs of a waiting request: its texts, its longest text's tokens, its age."""

    texts: int
    longest: int
    age_s: float


def take_group(waiting: list[Pending], max_texts: int, max_tokens: int, max_age_s: float) -> list[int]:
    """Indices (into `waiting`, ascending) of the requests the next call carries.

    Order of consideration: requests older than `max_age_s` in arrival order, then the others
    shortest first (ties in arrival order). A request joins while the padded size
    (texts x longest) stays within `max_tokens` and the texts within `max_texts`; one that does not
    fit is skipped (a later, shorter one may). The first request considered always goes, alone if
    need be: a request is never split nor refused here.
    """
    overdue = [i for i, p in enumerate(waiting) if p.age_s > max_age_s]
    fresh = sorted((i for i, p in enumerate(waiting) if p.age_s <= max_age_s), key=lambda i: waiting[i].longest)
    chosen: list[int] = []
    texts = longest = 0
    for i in overdue + fresh:
        p = waiting[i]
        n, top = texts + p.texts, max(longest, p.longest)
        if chosen and (n > max_texts or n * top > max_tokens):
            continue
        chosen.append(i)
        texts, longest = n, top
    return sorted(chosen)


def expected_group(waiting: int, in_flight: int, returning: int, cap: int) -> int:
    """Paced: requests the next call waits for, decided as a call returns. Every closed-loop client is
    waiting, inside a call in flight, or about to come back from the call returning; split evenly over
    the `cap` calls the backend runs at once, each call carries its share. With cap 1 that is everyone
    (the clients of the returning call too); with 2, half, so the next call is already queued inside
    Triton while one executes. (Counting only the returning call's clients let an uneven split such as
    15 + 1 repeat forever: the second call carried one text.)"""
    return max(1, -(-(waiting + in_flight + returning) // cap))


@dataclass
class _Waiting:
    texts: list[str]
    future: asyncio.Future
    since: float = 0.0  # loop time of arrival
    longest: int = 0  # token estimate of its longest text


@dataclass
class BatchStats:
    calls: int = 0
    texts: int = 0
    requests: int = 0
    split_retries: int = 0


class MicroBatcher(Generic[R]):
    """Coalesce `submit(texts)` calls into `call(all_texts)` calls.

    `call` returns a result for all texts, or a failure value; `is_model_failure(result)` says
    whether the result is a per-request model fault worth isolating; `slice_result(result, a, b)`
    cuts rows a..b out of a success. `max_inflight` (a number, or a function read at each
    decision; None = unknown) turns pacing on.
    """

    def __init__(self, call: Callable[[list[str]], Awaitable[R]], *, slice_result: Callable[[R, int, int], R],
                 is_failure: Callable[[R], bool], is_model_failure: Callable[[R], bool],
                 max_texts: int = 32, max_wait_s: float = 0.004, max_inflight: int | Callable[[], int] | None = None,
                 flush_when_idle: bool = False, on_call: Callable[[int], None] | None = None,
                 max_tokens: int | None = None, max_reorder_s: float = 0.02) -> None:
        if max_texts < 1:
            raise ValueError(f"max_texts must be >= 1, got {max_texts}")
        if max_wait_s < 0:
            raise ValueError(f"max_wait_s must be >= 0, got {max_wait_s}")
        self._call, self._slice = call, slice_result
        self._is_failure, self._is_model_failure = is_failure, is_model_failure
        self.max_texts, self.max_wait_s = max_texts, max_wait_s
        self._max_inflight = max_inflight
        self.max_tokens, self.max_reorder_s = max_tokens, max_reorder_s
        self.flush_when_idle = flush_when_idle
        self._expect = 1  # paced: requests the next call should carry (set when a call returns)
        self._on_call = on_call
        self._waiting: list[_Waiting] = []
        self._waiting_texts = 0
        self._timer: asyncio.TimerHandle | None = None
        self._inflight = 0
        self._inflight_requests = 0  # requests inside the calls in flight
        self._tasks: set[asyncio.Task] = set()
        self.stats = BatchStats()

    @property
    def inflight(self) -> int:
        return self._inflight

    async def submit(self, texts: list[str]) -> R:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if self._waiting_texts + len(texts) > self.max_texts:
            self._flush()  # the new request would overflow the open batch: send that one first
        self._waiting.append(_Waiting(list(texts), future, loop.time(), max(map(estimate_tokens, texts), default=0)))
        self._waiting_texts += len(texts)
        cap = self._cap()
        if cap is not None:
            self._paced_decide(cap)
        elif (self.flush_when_idle and self._inflight == 0) or self._waiting_texts >= self.max_texts \
                or self.max_wait_s == 0:
            self._flush()
        elif self._timer is None:
            self._timer = loop.call_later(self.max_wait_s, self._flush)
        return await future

    def _cap(self) -> int | None:
        """Calls the backend runs at once, or None: then the plain window applies (pacing without
        a cap, through Serve with replicas unknown, lost half the throughput: BENCHMARKS.md)."""
        cap = self._max_inflight() if callable(self._max_inflight) else self._max_inflight
        return None if cap is None else max(1, cap)

    def _paced_decide(self, cap: int) -> None:
        """Paced policy: send when a call's share of the clients waits (`expected_group`, set as each
        call returns), at most max_wait_s after the first; while `cap` calls are in flight, hold them
        (they would only queue inside Triton) until one returns."""
        if self._waiting_texts >= self.max_texts:
            self._flush()
            return
        if self._inflight >= cap:
            return  # a returning call releases them (_run's finally)
        if len(self._waiting) >= self._expect or self.max_wait_s == 0:
            self._flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.max_wait_s, self._flush)

    def _flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._waiting:
            return
        if self.max_tokens is None:
            batch, self._waiting, self._waiting_texts = self._waiting, [], 0
            self._send(batch)
            return
        # Length-aware: as many calls as the waiting requests need; under pacing, the first call
        # always goes and the rest only while a Triton is free (a returning call sends them).
        cap, first = self._cap(), True
        while self._waiting and (first or cap is None or self._inflight < cap):
            first = False
            now = asyncio.get_running_loop().time()
            picked = set(take_group([Pending(len(w.texts), w.longest, now - w.since) for w in self._waiting],
                                    self.max_texts, self.max_tokens, self.max_reorder_s))
            batch = [w for i, w in enumerate(self._waiting) if i in picked]
            self._waiting = [w for i, w in enumerate(self._waiting) if i not in picked]
            self._waiting_texts = sum(len(w.texts) for w in self._waiting)
            self._send(batch)

    def _send(self, batch: list[_Waiting]) -> None:
        self._inflight += 1
        self._inflight_requests += len(batch)
        task = asyncio.get_running_loop().create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: list[_Waiting]) -> None:
        try:
            texts = [t for w in batch for t in w.texts]
            self.stats.calls += 1
            self.stats.texts += len(texts)
            self.stats.requests += len(batch)
            if self._on_call is not None:
                self._on_call(len(texts))
            try:
                result = await self._call(texts)
            except BaseException as e:  # noqa: BLE001 - every waiter must hear of it
                for w in batch:
                    if not w.future.done():
                        w.future.set_exception(e)
                if not isinstance(e, Exception):
                    raise
                return
            if self._is_failure(result):
                if self._is_model_failure(result) and len(batch) > 1:
                    # Isolate the request that broke the model: each one alone, concurrently.
                    self.stats.split_retries += 1
                    alone = await asyncio.gather(*(self._call(w.texts) for w in batch), return_exceptions=True)
                    for w, r in zip(batch, alone, strict=True):
                        _settle(w.future, r)
                    return
                for w in batch:
                    _settle(w.future, result)
                return
            start = 0
            for w in batch:
                end = start + len(w.texts)
                _settle(w.future, self._slice(result, start, end))
                start = end
        finally:
            self._inflight -= 1
            self._inflight_requests -= len(batch)
            cap = self._cap()
            if cap is not None:
                self._expect = expected_group(len(self._waiting), self._inflight_requests, len(batch), cap)
                if self._waiting:
                    self._paced_decide(cap)


def _settle(future: asyncio.Future, value: object) -> None:
    if future.done():  # the caller went away (cancelled); nothing to deliver
        return
    if isinstance(value, BaseException):
        future.set_exception(value)
    else:
        future.set_result(value)
