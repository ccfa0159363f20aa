"""The suite leaves no tritonserver or Python-backend stub behind.

Every server the suite starts dies with its owner (serving/triton/server.py, reaper.py). An
orphan is one whose owner is gone: a `tritonserver` adopted by init, or a stub whose parent
is no `tritonserver`. The root conftest scans after each test module (noting where an orphan
was first seen) and once more at the end of the session, after a grace period in which a
dying owner's watchdog does its work; what is still there then fails the run and is killed.

When the suite runs as two lanes side by side (tests/lanes.py), each lane looks only at the
processes that inherited its `DISTILSERVE_TEST_LANE`: the other lane's Triton, briefly orphaned on
purpose by a fault test, is that lane's to check.
"""

from __future__ import annotations

import os
import time

import psutil

STUB = "triton_python_backend_stub"
LANE_ENV = "DISTILSERVE_TEST_LANE"


def _lane(proc: psutil.Process) -> str | None:
    try:
        return proc.environ().get(LANE_ENV)
    except psutil.Error:
        return None


def orphans(since: float) -> dict[int, str]:
    """{pid: command line} of orphaned Triton processes created at or after `since` (epoch s),
    of this lane only when `DISTILSERVE_TEST_LANE` is set."""
    lane = os.environ.get(LANE_ENV)
    found = {}
    for proc in psutil.process_iter(["pid", "ppid", "name", "cmdline", "create_time", "status"]):
        info = proc.info
        cmdline = " ".join(info["cmdline"] or [])
        if info["create_time"] is None or info["create_time"] < since or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["name"] == "tritonserver":
            orphaned = info["ppid"] == 1
        elif STUB in cmdline:
            try:
                parent = psutil.Process(info["ppid"]).name()
            except psutil.NoSuchProcess:
                parent = ""
            orphaned = parent not in ("tritonserver", "sh")  # sh: Triton's probe of the stub binary
        else:
            continue
        if orphaned and (lane is None or _lane(proc) == lane):
            found[info["pid"]] = cmdline[:300]
    return found


def alive(pid: int) -> bool:
    """Running: a zombie (dead, not yet reaped) counts as dead."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: set[int], grace: float) -> set[int]:
    """Those of `pids` still alive after up to `grace` seconds."""
    deadline = time.monotonic() + grace
    while True:
        left = {pid for pid in pids if alive(pid)}
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.2)


def kill(pids: set[int]) -> None:
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.NoSuchProcess:
            pass
