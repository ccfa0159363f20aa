"""Kill the process groups of an owner's tritonservers once the owner is gone.

Why it exists: PR_SET_PDEATHSIG kills a `tritonserver` when the process that started it dies,
but not the Python-backend stubs the server forked. A stub that is fully initialised notices its
server's death and exits; a stub launched while its model was still loading does not: it waits
for an `initialize` message from a server that no longer exists, forever, holding its memory
(seen: a Ray replica killed mid-deploy left such a stub behind, reparented to init).

How: the owner starts this script once (serving/triton/server.py `_Reaper`) and keeps the write
end of its stdin. It writes `add PID` after starting a server (the server runs in its own
session, so PID is also its process group, which its stubs share) and `del PID` once it has
stopped that group itself. When the owner dies, however it dies, the kernel closes the pipe:
this script reads EOF and SIGKILLs every group still registered, then removes the Python
backend's shared-memory regions those groups mapped (a killed server leaves them in /dev/shm,
1 MB or more each), then exits. serving/triton/server.py uses the same region functions.

It runs as `python -I -S reaper.py`, imports nothing of distilserve, and detaches (double
fork, own session) so that nothing that kills the owner's children or its process group
(Ray's cleanup of a dead worker's children, a terminal's Ctrl-C) takes it down first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys

SHM_REGION_PREFIX = "/dev/shm/triton_python_backend_shm_region_"


def shm_regions(maps: str) -> set[str]:
    """The Python backend's shared-memory regions named in a /proc/PID/maps text (mapped files are
    the last field; an already unlinked one ends in " (deleted)" and is left out)."""
    found = set()
    for line in maps.splitlines():
        fields = line.split(maxsplit=5)
        path = fields[5] if len(fields) == 6 else ""
        if path.startswith(SHM_REGION_PREFIX) and not path.endswith(" (deleted)"):
            found.add(path)
    return found


def group_shm_regions(pgid: int) -> set[str]:
    """Regions mapped by any live process of process group `pgid` (the server and its stubs)."""
    found: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                if int(f.read().rsplit(")", 1)[1].split()[2]) != pgid:  # field 5, after the name
                    continue
            with open(f"/proc/{entry}/maps") as f:
                found |= shm_regions(f.read())
        except (OSError, ValueError, IndexError):
            continue
    return found


def unlink_regions(regions: set[str]) -> None:
    for path in sorted(regions):
        with contextlib.suppress(OSError):  # gone already: a graceful exit or a stub removed it
            os.unlink(path)


def apply(line: str, groups: set[int]) -> set[int]:
    """The groups to kill after one line of the protocol; malformed lines change nothing."""
    parts = line.split()
    if len(parts) != 2 or parts[0] not in ("add", "del") or not parts[1].isdigit() or int(parts[1]) <= 1:
        return groups
    pid = int(parts[1])
    return groups | {pid} if parts[0] == "add" else groups - {pid}


def kill_groups(groups: set[int]) -> None:
    for pgid in sorted(groups):
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass  # already gone: the server's own stop() or its stubs' own exit got there first


def main() -> None:
    if os.fork() > 0:  # the owner reaps this first process at once; the second is init's child
        os._exit(0)
    os.setsid()
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    groups: set[int] = set()
    for line in sys.stdin:  # blocks until the owner writes, or dies (EOF)
        groups = apply(line, groups)
    reap(groups)


def reap(groups: set[int]) -> None:
    """Kill the groups, then remove the regions they mapped (read first: the dead map nothing)."""
    regions: set[str] = set()
    for pgid in groups:
        regions |= group_shm_regions(pgid)
    kill_groups(groups)
    unlink_regions(regions)


if __name__ == "__main__":
    main()
