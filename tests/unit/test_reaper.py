"""serving/triton/reaper.py: the protocol as a table, and the watchdog with plain `sleep` process
groups standing in for tritonservers (the real thing: tests/integration/test_triton_server.py)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from serving.triton.reaper import apply
from tests.helpers import wait_for
from tests.leaks import alive

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("groups", "line", "after"), [
    (set(), "add 123\n", {123}),
    ({123}, "add 123", {123}),
    ({123}, "del 123\n", set()),
    ({123}, "del 456\n", {123}),
    ({123}, "add 456", {123, 456}),
    (set(), "", set()),
    (set(), "add\n", set()),
    (set(), "add -5\n", set()),       # never a negative pid: killpg(-5) is not what was meant
    (set(), "add 0\n", set()),        # 0 is the caller's own group
    (set(), "add 1\n", set()),        # 1 is init
    (set(), "add 12 13\n", set()),
    (set(), "kill 123\n", set()),
    (set(), "add 1e3\n", set()),
])
def test_apply(groups: set[int], line: str, after: set[int]) -> None:
    assert apply(line, groups) == after


OWNER = textwrap.dedent(
    """
    import subprocess, sys, time
    from serving.triton.server import _REAPER
    groups = []
    for _ in range(2):  # two "servers", each a session leader with a child of its own (its "stub")
        leader = subprocess.Popen(["sh", "-c", "sleep 600 & exec sleep 600"], start_new_session=True)
        groups.append(leader.pid)
        _REAPER.add(leader.pid)
    _REAPER.remove(groups[1])  # stopped by its owner: the watchdog must leave this group alone
    time.sleep(0.5)
    import psutil
    print(*[p.pid for g in groups for p in [psutil.Process(g), *psutil.Process(g).children()]], flush=True)
    time.sleep(600)
    """
)


def test_groups_still_registered_are_killed_when_the_owner_dies_and_no_others() -> None:
    owner = subprocess.Popen([sys.executable, "-c", OWNER], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    pids: list[int] = []
    try:
        pids = [int(p) for p in owner.stdout.readline().split()]
        assert len(pids) == 4, pids
        kept, removed = pids[:2], pids[2:]
        assert all(alive(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        wait_for(lambda: not any(alive(p) for p in kept), 10, "the registered group to die with its owner")
        time.sleep(0.5)
        assert all(alive(p) for p in removed), "a group removed from the watchdog was killed"
    finally:
        if owner.poll() is None:
            owner.kill()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_killed_watchdog_is_replaced_and_learns_the_live_groups() -> None:
    from serving.triton.server import _Reaper

    reaper = _Reaper()
    others = set(_watchdogs())  # any other process's, e.g. a stack running beside the tests
    leader = subprocess.Popen(["sleep", "600"], start_new_session=True)
    later: subprocess.Popen | None = None
    try:
        reaper.add(leader.pid)
        first = sorted(set(_watchdogs()) - others)
        assert len(first) == 1
        os.kill(first[0], signal.SIGKILL)
        wait_for(lambda: not alive(first[0]), 10, "the first watchdog to die")
        later = subprocess.Popen(["sleep", "600"], start_new_session=True)
        reaper.add(later.pid)  # the write to the dead watchdog fails; a new one starts with both groups
        second = sorted(set(_watchdogs()) - others)
        assert len(second) == 1 and second != first
        reaper._pipe.close()  # what the owner's death does to the pipe
        wait_for(lambda: leader.poll() is not None and later.poll() is not None, 10,
                 "both groups killed by the second watchdog")
    finally:
        for proc in (leader, later):
            if proc is not None and proc.poll() is None:
                proc.kill()


def _watchdogs() -> list[int]:
    """Watchdogs started by this test process (they are init's children, so found by cmdline)."""
    script = str(ROOT / "serving" / "triton" / "reaper.py")
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if script.encode() in cmdline and alive(int(entry)):
                found.append(int(entry))
    return found
