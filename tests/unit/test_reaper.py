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


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


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
        assert all(_alive(p) for p in pids)
        owner.send_signal(signal.SIGKILL)
        owner.wait(10)
        assert _wait(lambda: not any(_alive(p) for p in kept)), "the registered group outlived its owner"
        time.sleep(0.5)
        assert all(_alive(p) for p in removed), "a group removed from the watchdog was killed"
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
    try:
        reaper.add(leader.pid)
        first = sorted(set(_watchdogs()) - others)
        assert len(first) == 1
        os.kill(first[0], signal.SIGKILL)
        assert _wait(lambda: not _alive(first[0]))
        later = subprocess.Popen(["sleep", "600"], start_new_session=True)
        reaper.add(later.pid)  # the write to the dead watchdog fails; a new one starts with both groups
        second = sorted(set(_watchdogs()) - others)
        assert len(second) == 1 and second != first
        reaper._pipe.close()  # what the owner's death does to the pipe
        assert _wait(lambda: leader.poll() is not None and later.poll() is not None), "groups not killed"
    finally:
        for proc in (leader, locals().get("later")):
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
            if script.encode() in cmdline and _alive(int(entry)):
                found.append(int(entry))
    return found
