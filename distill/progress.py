"""Progress for long steps: a bar on stderr, and one log line with the count and rate at the end.

On a terminal the bar redraws every second; in a log file (not a TTY) it writes a line every
30 s instead of flooding the file. The final line goes through `logging`, so it lands in logs too.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm.auto import tqdm

log = logging.getLogger("distill")


def bar(total: int, desc: str, unit: str = "it") -> tqdm:
    """A tqdm bar on stderr for `total` units of `unit`."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, mininterval=1.0 if tty else 30.0,
                dynamic_ncols=tty, leave=tty)


def rate_line(desc: str, count: int, unit: str, seconds: float) -> str:
    """'desc: 1,200 texts in 10.0 s (120.0 texts/s)'."""
    rate = count / seconds if seconds > 0 else float("inf")
    return f"{desc}: {count:,} {unit} in {seconds:.1f} s ({rate:,.1f} {unit}/s)"


@contextmanager
def step(desc: str, total: int, unit: str = "it") -> Iterator[tqdm]:
    """A bar for the block; on leaving it, log the count done and the rate."""
    t0 = time.perf_counter()
    log.info("%s: %s %s ...", desc, f"{total:,}", unit)
    b = bar(total, desc, unit)
    try:
        yield b
    finally:
        b.close()
        log.info("%s", rate_line(desc, int(b.n), unit, time.perf_counter() - t0))
