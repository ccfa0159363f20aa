"""Load shedding at the ingress: a bounded admission queue per model version, sized from the SLO.

The queue of a version is every text the ingress has accepted for it and not yet answered
(waiting in the micro-batcher or in a downstream call). Its bound comes from the latency
objective and the measured service time:

    limit = clamp(floor(slo_ms * parallel / ms_per_text), min_queue, max_queue)

where `ms_per_text` is an EWMA of (call duration / texts in the call) over the version's recent
calls of at least `min_call_texts` texts ("full" calls), and `parallel` the calls the backend runs
at once (one per same-node Triton; 1 when unknown).

A smaller call's duration is mostly per-call overhead when the model batches well, and a bound
sized from it as if it were cost per text refuses a burst that batching would serve (seen
2026-12-02: a version measured only on 1-text calls, at 59 ms each, was bounded at 34 texts and
refused 19 requests of a 50-client burst of a model that answers 50 texts in one such call). Not
measuring small calls at all was worse where calls stay small: a version that had only seen them
was unbounded (`max_queue`) when overload came, so its first wave queued for seconds (the
shedding benchmark at `slo_ms` 40: admitted p99 44x the unloaded p99 instead of 3.3x). So small
calls give a *provisional* estimate, their duration spread over `min_call_texts` texts (as if the
call could have carried that many in the same time: it errs on the side of admitting). The first
full call replaces it. After that a small call of n texts counts only when it proves the estimate
wrong. With a call costing overhead + texts x per-text (both >= 0), a call of the full calls' usual
size F (an EWMA) costs at least the small call's duration, so its cost per text lies between
duration / F and duration / n; an estimate outside that interval moves towards its nearer end, and
one inside it stays. So a version whose calls stay small (a tight bound) still follows a slowdown
and a recovery, and idle 1-text calls do not drag down the bound of a model that batches well. One
slow call (a cold replica, a stall) moves the estimate at most `MAX_SAMPLE_GROWTH` times the current
one, so it cannot collapse the bound; a lasting slowdown still raises it within a few calls. (With
batching off every request is its own call, and every call is full.) Before any call is measured
the limit is `max_queue`.
Through Serve (parallel unknown, calls overlap) each measured duration includes queueing
downstream, so the bound errs low.

A user's request is admitted while fewer texts than the limit are queued ahead of it, whatever
its own size: its first text then starts within about `slo_ms`, and it is answered within that
plus its own service time. Its texts then count against every request after it, so the queue may
pass its limit by at most one request, and nothing is admitted until it is back under the limit.
(Counting a request's own texts instead, as before 2026-12-02, refused a request bigger than the
limit whenever anything else was being served: with about 14 ms a text on CPU and `slo_ms` 500
the limit is about 35 texts, while a request may carry 64. How big a request may be is
`limits.max_items`' business, not the queue's.) Otherwise it is refused at once (429 with
Retry-After, never a timeout).

Shadow copies are shed first: a copy is admitted only when it fits whole within half the limit
(or the queue is empty), and a shed copy is never reported to a user. `Retry-After` is the time
the queue takes to drain, rounded up to whole seconds (at least 1).

`decide` is pure (state in, decision out); `VersionQueue` keeps the per-version state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class Overloaded(Exception):  # noqa: N818 - the one overload signal; the HTTP layer renders 429 + Retry-After
    """The version's admission queue is full: refused at once, `retry_after_s` whole seconds."""

    def __init__(self, model: str, version: str, retry_after_s: int, queued: int, limit: int) -> None:
        super().__init__(model, version, retry_after_s, queued, limit)  # args: picklable
        self.model, self.version, self.retry_after_s = model, version, retry_after_s
        self.queued, self.limit = queued, limit

    def __str__(self) -> str:
        return (f"version {self.version} of model {self.model!r} is overloaded ({self.queued} texts queued, "
                f"limit {self.limit}); retry after {self.retry_after_s} s")


@dataclass(frozen=True)
class Decision:
    admit: bool
    limit: int  # the queue bound in texts: users are admitted below it; shadow copies must fit in half
    retry_after_s: int  # meaningful when refused


def queue_limit(slo_ms: float, ms_per_text: float | None, parallel: int, min_queue: int, max_queue: int) -> int:
    """Texts the version may have outstanding so the last one is answered within about slo_ms."""
    if ms_per_text is None or ms_per_text <= 0:
        return max_queue
    return max(min_queue, min(max_queue, math.floor(slo_ms * max(1, parallel) / ms_per_text)))


def decide(*, queued: int, texts: int, shadow: bool, slo_ms: float, ms_per_text: float | None, parallel: int,
           min_queue: int, max_queue: int) -> Decision:
    """Admit `texts` more texts to a queue holding `queued`, or refuse with a Retry-After.

    A user's request: while `queued` < limit (the wait ahead of it fits the SLO), whatever its size.
    A shadow copy: when it fits whole within half the limit. An empty queue admits anything.
    """
    limit = queue_limit(slo_ms, ms_per_text, parallel, min_queue, max_queue)
    admit = queued + texts <= limit // 2 if shadow else queued < limit
    if queued == 0 or admit:
        return Decision(True, limit, 0)
    drain_ms = queued * (ms_per_text or 0.0) / max(1, parallel)
    return Decision(False, limit, max(1, math.ceil(drain_ms / 1000)))


MAX_SAMPLE_GROWTH = 4.0  # a sample above this many times the current estimate counts as this much


@dataclass
class VersionQueue:
    """Outstanding texts of one version and its measured service time."""

    queued: int = 0
    ms_per_text: float | None = None
    full_texts: float | None = None  # EWMA of the texts in calls of at least min_texts texts; None: none yet
    shed: dict[str, int] = field(default_factory=lambda: {"user": 0, "shadow": 0})

    @property
    def provisional(self) -> bool:
        """ms_per_text comes from small calls only (no call of min_texts texts yet)."""
        return self.ms_per_text is not None and self.full_texts is None

    def observe_call(self, seconds: float, texts: int, alpha: float, min_texts: int = 1) -> None:
        """Fold one downstream call into the EWMA of milliseconds per text (see the module's docstring):
        a call of at least `min_texts` texts counts as measured; a smaller one is spread over `min_texts`
        texts until such a call has been seen, and after it moves the estimate only into the interval
        of full-call costs per text it implies."""
        if texts <= 0:
            return
        ms = seconds * 1000
        full = texts >= min_texts
        if not full and self.full_texts is not None and self.ms_per_text is not None:
            low, high = ms / self.full_texts, ms / texts  # where a full call's cost per text lies
            if low <= self.ms_per_text <= high:
                return  # consistent with the estimate: no news
            sample = low if self.ms_per_text < low else high
        else:
            sample = ms / (texts if full else min_texts)
        first_full = full and self.full_texts is None
        if full:
            self.full_texts = texts if self.full_texts is None else alpha * texts + (1 - alpha) * self.full_texts
        if self.ms_per_text is None or first_full:  # the first estimate, or the first full call replacing it
            self.ms_per_text = sample
            return
        sample = min(sample, MAX_SAMPLE_GROWTH * self.ms_per_text)
        self.ms_per_text = alpha * sample + (1 - alpha) * self.ms_per_text
