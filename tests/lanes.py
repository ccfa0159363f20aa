"""`make test-lanes`: the whole suite as two pytest processes side by side ("lanes").

Not `make test`: on 2026-12-02 three CI rehearsals with the lanes as `make test` each failed a
different test under the two lanes' load (a replica's Triton counted as a batch job's, a local Ray
that missed Ray's start-up deadline, a UI page read before its gates were in); each cause is fixed,
but the tail of load-only failures is long, and a red CI lands nothing. The lanes took 1,818-1,929 s
in all against about 2,300-2,700 s as one process; later that day, with bytecode compiled at
install, one process took 1,545 s (benchmarks/results/ci-time-20261202/).

Why: run as one process, the suite left a third to a half of this 2-core machine idle while the
integration tier waited on processes starting (Ray nodes, replicas, Triton loads), and it took
43 minutes on a slow day against CI's 30 (one run: `benchmarks/results/ci-time-20261201/`). Each
lane has its own local Ray, its own tiny model repository and its own fixtures; nothing is shared
between them but the machine.

What keeps two lanes from seeing each other's processes:
- each lane runs with `DISTILSERVE_TEST_LANE` set, which every process it starts inherits (Ray's
  nodes and workers, tritonserver, `distilserve` subprocesses); the orphan check of
  tests/leaks.py looks only at its own lane's processes;
- tests that look for the processes they started look below their own process tree (never at
  every tritonserver of the machine).

Lane "b" takes the unit and e2e tiers and the integration modules in `LANE_B`: self-contained ones
(own Ray nodes, own servers, no module-wide stack) whose sum roughly balances lane "a", which takes
every other integration module. Both stream as they run; each line is prefixed with its lane.
The exit status is the first failing lane's, 0 if both passed.

    python -m tests.lanes [extra pytest args, e.g. -x]
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
ENV = "DISTILSERVE_TEST_LANE"

# Integration modules for lane b. In the first two-lane run (2026-12-01 21:22, CI rehearsal) the
# lanes took 1,608 s (a) and 1,642 s (b, with test_multinode_rollouts failing after 207 s of its
# usual 320): test_onnx_gpu_bench (62 s, no Ray) went to lane a after it to even them out. On
# 2026-12-02, with faster module stacks in lane a and test_multinode's second deploy gone from lane
# b, the lanes took 1,733 s (a) and 1,494 s (b) with test_onnx and test_triton_server in lane a
# (benchmarks/results/ci-time-20261202/): they are back in lane b.
LANE_B = (
    "test_multinode_rollouts.py", "test_multinode.py", "test_onnx.py", "test_triton_server.py",
    "test_registry_backends.py", "test_registry_controller.py", "test_registry_crash.py",
    "test_leader_lock_postgres.py", "test_redis_cache.py", "test_own_model.py",
)


def split(integration: list[str]) -> dict[str, list[str]]:
    """{lane: pytest paths} for the integration module file names found on disk."""
    unknown = [m for m in LANE_B if m not in integration]
    if unknown:
        raise ValueError(f"LANE_B names integration modules that do not exist: {unknown}")
    return {
        "a": [f"tests/integration/{m}" for m in sorted(integration) if m not in LANE_B],
        "b": ["tests/unit", "tests/e2e", *(f"tests/integration/{m}" for m in LANE_B)],
    }


def exit_status(codes: dict[str, int]) -> int:
    """The first failing lane's status (in lane order), else 0."""
    return next((codes[lane] for lane in sorted(codes) if codes[lane] != 0), 0)


def _pump(lane: str, proc: subprocess.Popen) -> None:
    assert proc.stdout is not None
    for line in proc.stdout:
        sys.stdout.write(f"[{lane}] {line}")
        sys.stdout.flush()


def main(extra: list[str]) -> int:
    integration = sorted(p.name for p in (REPO_ROOT / "tests" / "integration").glob("test_*.py"))
    lanes = split(integration)
    procs: dict[str, subprocess.Popen] = {}
    pumps = []
    for lane, paths in lanes.items():
        # One lane keeps pytest's cache (last failures); two writers would race on it.
        cache = [] if lane == "a" else ["-p", "no:cacheprovider"]
        cmd = [sys.executable, "-m", "pytest", "-q", "--durations=20", *cache, *extra, *paths]
        procs[lane] = subprocess.Popen(cmd, cwd=REPO_ROOT, env={**os.environ, ENV: lane}, stdout=subprocess.PIPE,
                                       stderr=subprocess.STDOUT, text=True, bufsize=1)
        pump = threading.Thread(target=_pump, args=(lane, procs[lane]), daemon=True)
        pump.start()
        pumps.append(pump)
    codes = {lane: proc.wait() for lane, proc in procs.items()}
    for pump in pumps:
        pump.join(10)
    for lane, code in codes.items():
        print(f"lane {lane} ({' '.join(lanes[lane])}): {'passed' if code == 0 else f'FAILED (pytest exit {code})'}")
    return exit_status(codes)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
