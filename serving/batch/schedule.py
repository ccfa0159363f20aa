"""`distilserve batch schedule`: run a batch job once per period, resumably.

Time is cut into slots of `every` seconds from `anchor` (UTC). Each slot's job writes to its
own folder `<output>/<slot start, e.g. 20250101T000000Z>`, so a scheduler (or a cron run)
killed half-way and started again in the same slot resumes that slot's job; a state file
records the last finished slot so no slot runs twice. Slots missed while nothing ran are
not replayed: only the current one is due (the newest data and model are what matter).

The decision is pure (`next_step`); `Scheduler` does the I/O with an injected clock.

Cron instead of the loop (every hour, at minute 5):
    5 * * * *  cd /srv/distilserve && .venv/bin/distilserve batch schedule --once --every 1h \\
               --model sentiment --input data/today.parquet --output runs/batch --cache .distilserve/predictions.db
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from serving.batch import shards as sh

log = logging.getLogger("distilserve.batch.schedule")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_every(text: str) -> timedelta:
    """'90s', '15m', '1h', '1d' (or a bare number of seconds) -> a positive timedelta."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", text)
    if not m or float(m.group(1)) <= 0:
        raise ValueError(f"every: {text!r} is not a period; use e.g. '30m', '1h' or '1d'")
    return timedelta(seconds=float(m.group(1)) * _UNITS[m.group(2) or "s"])


def slot_start(now: datetime, every: timedelta, anchor: datetime = EPOCH) -> datetime:
    """Start of the slot holding `now` (slots are [anchor + k*every, anchor + (k+1)*every))."""
    k = (now - anchor) // every
    return anchor + k * every


def slot_name(start: datetime) -> str:
    return start.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class Step:
    """What to do now: run `slot` (None: nothing), then wake at `wake_at`."""

    slot: datetime | None
    wake_at: datetime


def next_step(now: datetime, every: timedelta, last_done: datetime | None, anchor: datetime = EPOCH) -> Step:
    """Pure: run the current slot unless it is finished; then sleep until the next slot starts."""
    current = slot_start(now, every, anchor)
    nxt = current + every
    if last_done is None or last_done < current:
        return Step(current, nxt)
    return Step(None, nxt)


class Scheduler:
    """The loop around `next_step`: state in a JSON file, the job and the clock injected."""

    def __init__(self, job: Callable[[datetime, Path], object], output: Path, every: timedelta,
                 anchor: datetime = EPOCH, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.job, self.output, self.every, self.anchor = job, Path(output), every, anchor
        self.clock, self.sleep = clock, sleep
        self.state_path = self.output / "_schedule.json"

    def last_done(self) -> datetime | None:
        if not self.state_path.is_file():
            return None
        return datetime.fromisoformat(json.loads(self.state_path.read_text())["last_done"])

    def tick(self) -> Step:
        """One decision: run the due slot's job (if any) and record it; returns the step taken."""
        step = next_step(self.clock(), self.every, self.last_done(), self.anchor)
        if step.slot is not None:
            run_dir = self.output / slot_name(step.slot)
            log.info("slot %s due: running into %s", slot_name(step.slot), run_dir)
            self.job(step.slot, run_dir)  # raises on failure: the slot stays due and is retried
            self.output.mkdir(parents=True, exist_ok=True)
            sh.atomic_write_bytes(self.state_path, json.dumps(
                {"last_done": step.slot.isoformat(), "run_dir": str(run_dir)}).encode())
        return step

    def run_forever(self, max_ticks: int | None = None, retry_s: float = 60.0) -> None:
        ticks = 0
        while max_ticks is None or ticks < max_ticks:
            ticks += 1
            try:
                step = self.tick()
                wait = (step.wake_at - self.clock()).total_seconds()
            except Exception:  # noqa: BLE001 - one failed job must not end the schedule
                log.exception("scheduled job failed; retrying in %.0fs", retry_s)
                wait = retry_s
            if max_ticks is None or ticks < max_ticks:
                self.sleep(max(wait, 0.0))
