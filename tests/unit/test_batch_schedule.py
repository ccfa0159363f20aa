"""The batch scheduler: pure slot arithmetic, then the loop with a fake clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from serving.batch.schedule import EPOCH, Scheduler, next_step, parse_every, slot_name, slot_start

H = timedelta(hours=1)


def t(hh: int, mm: int = 0, ss: int = 0, day: int = 1) -> datetime:
    return datetime(2025, 1, day, hh, mm, ss, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        pytest.param("90", 90, id="bare-seconds"),
        pytest.param("90s", 90, id="seconds"),
        pytest.param("15m", 900, id="minutes"),
        pytest.param("1h", 3600, id="hour"),
        pytest.param("1.5h", 5400, id="fractional"),  # 1.5 * 3600
        pytest.param("1d", 86400, id="day"),
    ],
)
def test_parse_every(text: str, seconds: float) -> None:
    assert parse_every(text).total_seconds() == seconds


@pytest.mark.parametrize("bad", ["", "0", "0h", "-1h", "1w", "h", "1 hour"])
def test_parse_every_refuses_with_an_example(bad: str) -> None:
    with pytest.raises(ValueError, match="use e.g. '30m'"):
        parse_every(bad)


@pytest.mark.parametrize(
    ("now", "every", "anchor", "start"),
    [
        pytest.param(t(10, 0, 0), H, EPOCH, t(10), id="on-the-boundary-is-the-new-slot"),
        pytest.param(t(10, 59, 59), H, EPOCH, t(10), id="last-second-of-slot"),
        pytest.param(t(10, 30), H, t(0, 15), t(10, 15), id="anchored-quarter-past"),  # 0:15 + 10*1h
        pytest.param(t(10, 5), H, t(12, 15), t(9, 15), id="anchor-in-the-future"),  # 12:15 - 3h
        pytest.param(t(10, 5), timedelta(minutes=15), EPOCH, t(10), id="15-minute-slots"),
        pytest.param(t(23, 0, day=2), timedelta(days=1), EPOCH, t(0, day=2), id="daily"),
    ],
)
def test_slot_start(now: datetime, every: timedelta, anchor: datetime, start: datetime) -> None:
    assert slot_start(now, every, anchor) == start


@pytest.mark.parametrize(
    ("now", "last_done", "slot", "wake"),
    [
        pytest.param(t(10, 5), None, t(10), t(11), id="never-ran-run-current"),
        pytest.param(t(10, 5), t(9), t(10), t(11), id="previous-done-run-current"),
        pytest.param(t(10, 5), t(10), None, t(11), id="current-done-sleep-to-next"),
        pytest.param(t(15, 5), t(10), t(15), t(16), id="missed-slots-not-replayed-only-current"),
        pytest.param(t(11, 0), t(10), t(11), t(12), id="exactly-at-next-boundary"),
    ],
)
def test_next_step_table(now: datetime, last_done: datetime | None, slot: datetime | None, wake: datetime) -> None:
    step = next_step(now, H, last_done)
    assert step.slot == slot and step.wake_at == wake


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


def test_scheduler_runs_each_slot_once_into_its_own_folder_and_survives_a_restart(tmp_path: Path) -> None:
    clock = FakeClock(t(10, 20))
    ran: list[tuple[datetime, Path]] = []

    def job(slot: datetime, run_dir: Path) -> None:
        clock.now += timedelta(minutes=10)  # the job takes 10 minutes
        ran.append((slot, run_dir))

    sched = Scheduler(job, tmp_path, H, clock=clock, sleep=clock.sleep)
    sched.run_forever(max_ticks=3)
    # 10:20 run slot 10 (ends 10:30), sleep 30m; 11:00 run slot 11 (ends 11:10), sleep 50m; 12:00 run slot 12
    assert [s for s, _ in ran] == [t(10), t(11), t(12)]
    assert clock.slept == [1800.0, 3000.0]
    assert [d.name for _, d in ran] == [slot_name(t(10)), slot_name(t(11)), slot_name(t(12))]
    assert ran[0][1] == tmp_path / "20250101T100000Z"
    # A restart (new Scheduler, same folder) in the same slot does not run it again (cron --once).
    again = Scheduler(job, tmp_path, H, clock=clock, sleep=clock.sleep)
    assert again.tick().slot is None and len(ran) == 3


def test_a_failed_job_leaves_the_slot_due_and_the_loop_retries(tmp_path: Path) -> None:
    clock = FakeClock(t(10, 20))
    calls: list[datetime] = []

    def flaky(slot: datetime, run_dir: Path) -> None:
        calls.append(clock.now)
        if len(calls) == 1:
            raise RuntimeError("tritonserver did not start")

    sched = Scheduler(flaky, tmp_path, H, clock=clock, sleep=clock.sleep)
    sched.run_forever(max_ticks=2, retry_s=60)
    assert calls == [t(10, 20), t(10, 21)]  # retried 60 s later, same slot
    assert sched.last_done() == t(10)
