"""How many texts a batch job puts in one inference call, so that one call takes about a time budget.

A job on `--backend serving` shares a running replica's Triton with live traffic. Triton runs one
batch at a time per model instance, so a live request that arrives while a job's call executes
waits for that call, and for any other call of the job queued before it. With 64-text calls, two
in flight, on the 2-core CPU machine that was about 1 s (median; benchmarks/results/
probe-batch-yield-20261202); with 8-text calls, one at a time, about 30 ms. Bounding a call's
duration instead of its text count bounds that wait wherever the job runs: on a CPU at about 14 ms
a text a 100 ms budget gives calls of about 7 texts, on a GPU that answers 64 texts in a few
milliseconds, full calls.

    size = clamp(floor(max_call_ms / ms_per_text), 1, max_texts)

where `ms_per_text` is an EWMA of (call duration / texts in the call) over the job's own calls. A
call's duration includes its fixed cost, so a small call measures a higher cost per text and the
next one grows, until one call takes about the budget. It also includes time spent queued behind
live requests, so under live load the calls shrink further. Before the first measurement a call
carries `first_texts` texts.

The budget only matters while someone else uses the Triton. `LiveWatch` tells the job whether
anyone does: between its calls it compares the requests the Triton says it served with the job's
own. While none but the job's arrive, calls are full (`max_texts`): on the CPU machine, where a call
of 64 texts now runs 1.1x faster per text than one of 20 (model.py's length-sorted passes), a job
held to 100 ms calls on an idle replica ran at 0.6 of the raw model, and with full calls at 0.9
(BENCH_BATCH.md). From the first live request seen, and for `hold_s` after the last one, the budget
applies again. The cost: a live request that arrives after a quiet spell may wait for one full
call (about 0.3 s for the teacher on CPU) before the job sees it and shrinks its calls.

`next_size` is pure; `CallSizer` keeps the EWMA; `LiveWatch` is pure state fed by the caller.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def next_size(ms_per_text: float | None, max_call_ms: float | None, max_texts: int, first_texts: int) -> int:
    """Texts for the next call: `max_texts` with no budget, `first_texts` before any measurement."""
    if max_call_ms is None:
        return max_texts
    if ms_per_text is None or ms_per_text <= 0:
        return max(1, min(max_texts, first_texts))
    return max(1, min(max_texts, math.floor(max_call_ms / ms_per_text)))


@dataclass
class CallSizer:
    """The job's measured cost per text and the size of its next call (one per Predictor)."""

    max_texts: int
    max_call_ms: float | None = None
    first_texts: int = 4
    alpha: float = 0.3
    ms_per_text: float | None = None

    def size(self, full: bool = False) -> int:
        """Texts for the next call; `full`: nobody else uses the Triton, the budget does not apply."""
        if full:
            return self.max_texts
        return next_size(self.ms_per_text, self.max_call_ms, self.max_texts, self.first_texts)

    def observe(self, seconds: float, texts: int) -> None:
        """Fold one finished call into the EWMA of milliseconds per text."""
        if texts <= 0 or seconds < 0:
            return
        sample = seconds * 1000 / texts
        self.ms_per_text = sample if self.ms_per_text is None else self.alpha * sample + (1 - self.alpha) * self.ms_per_text


@dataclass
class LiveWatch:
    """Whether anyone but the job has used the shared Triton lately (live traffic).

    The caller samples, at most every `interval_s`, two counters: the requests the Triton has served
    for the version, and the calls the job has sent, read after the Triton's reply. The first sample
    comes before the job's first call. From then on, served minus sent is the others' requests minus
    the job's calls not yet counted by the Triton (in flight, or counted a moment after the job had
    its answer), so it never overstates the others; live traffic is a new high of it, or a served
    count that went backwards (a restarted Triton). `live` is True until one quiet interval has been
    seen and for `hold_s` after live traffic was last seen. Each of several actors sharing one
    Triton sees the others' calls as live traffic and keeps its budget: the safe side.
    """

    interval_s: float = 1.0
    hold_s: float = 5.0
    last_at: float | None = None
    base: tuple[int, int] | None = None  # (served, own) at the first sample, or when the Triton restarted
    high: int = 0  # the highest excess (served - own since base) seen
    quiet_seen: bool = False
    last_live: float | None = None
    last_saw_live: bool = False  # the last read raised the high (or found a new Triton)

    def due(self, now: float) -> bool:
        """Time for the next read: `interval_s` after a quiet one (to see live traffic start soon),
        `hold_s` after one that saw live traffic (a read meanwhile could only extend the hold: the
        job's calls stay budgeted either way, and each read costs the Triton something)."""
        if self.last_at is None:
            return True
        return now - self.last_at >= (self.hold_s if self.last_saw_live else self.interval_s)

    def observe(self, now: float, served: int, own: int) -> None:
        if self.base is None or served < self.base[0]:
            self.last_saw_live = self.base is not None  # a new Triton: whatever it served is unknown
            self.base, self.high = (served, own), 0
        else:
            excess = (served - self.base[0]) - (own - self.base[1])
            self.last_saw_live = excess > self.high
            if self.last_saw_live:
                self.high = excess
            else:
                self.quiet_seen = True
        if self.last_saw_live:
            self.last_live = now
        self.last_at = now

    def live(self, now: float) -> bool:
        if not self.quiet_seen:
            return True
        return self.last_live is not None and now - self.last_live < self.hold_s
