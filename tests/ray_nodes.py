"""Ray nodes on 127.0.0.1, each with its own temp dir and ports, started and stopped by us alone.

Used by the two-node integration test (tests/integration/test_multinode.py) and the multi-node
rollout benchmark (loadtests/bench_multinode.py). Nothing here calls `ray stop`, which stops
every Ray on the machine: each node is a process of ours, stopped with its descendants.

Why a worker node is not `ray start --address=...`: on Linux the Ray 2.60 CLI rewrites a
loopback `--node-ip-address` / `--address` to the machine's routable IP (services.
resolve_ip_for_localhost) unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, and with that set it
refuses to start a non-head node. A worker on 127.0.0.1 is therefore started the way Ray's
own `ray.cluster_utils.Cluster.add_node` does it: `ray._private.node.Node(head=False)`, in a
process of its own (`python -m tests.ray_nodes worker-node ...`) that blocks like
`ray start --block`.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import wait_for
from tests.ports import distinct_free_ports  # also for loadtests/bench_batch.py

RAY_CLI = Path(sys.executable).with_name("ray")
REPO_ROOT = Path(__file__).resolve().parents[1]

# Everything we start binds loopback and needs no token; HOME-level ray files stay untouched.
LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_AUTH_MODE": "disabled",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_SERVE_DEFAULT_HTTP_HOST": "127.0.0.1",
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # A stopped node shuts down at once instead of draining for 30 s.
    "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
}
OBJECT_STORE_BYTES = 200 * 1024 * 1024
wait = wait_for  # poll until true; exceptions count as 'not yet'; AssertionError on timeout


# Ray waits 30 s for a new node's raylet to register (hard-coded in ray._private.node.Node); on a
# loaded machine (seen with the suite's two lanes side by side, tests/lanes.py) that wait can run out,
# and the node exits. Both kinds of node are then started again, up to this many times in all.
NODE_ATTEMPTS = 3
HEAD_TIMEOUT_S = 120.0
HEAD_UP = "Ray runtime started"  # what `ray start` prints once its node is up


def start_head(temp_dir: str, gcs_port: int, num_cpus: float, resources: dict[str, float]) -> subprocess.Popen:
    """`ray start --head --block` on 127.0.0.1; returns once it says "Ray runtime started".

    A head that exits first (or is not up within HEAD_TIMEOUT_S) is stopped with everything it
    started, and started again on the same port, up to NODE_ATTEMPTS times."""
    for attempt in range(1, NODE_ATTEMPTS + 1):
        proc, up = _start_head_once(temp_dir, gcs_port, num_cpus, resources)
        if up:
            return proc
        print(f"ray_nodes: the head node did not start (attempt {attempt} of {NODE_ATTEMPTS})", file=sys.stderr,
              flush=True)
    raise SystemExit(f"`ray start --head` failed {NODE_ATTEMPTS} times (its output is above)")


def _start_head_once(temp_dir: str, gcs_port: int, num_cpus: float,
                     resources: dict[str, float]) -> tuple[subprocess.Popen, bool]:
    import threading

    dashboard, agent, client = distinct_free_ports(3, exclude=(gcs_port,))
    proc = subprocess.Popen([
        str(RAY_CLI), "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={gcs_port}",
        f"--temp-dir={temp_dir}", f"--num-cpus={num_cpus}", "--num-gpus=0", f"--resources={json.dumps(resources)}",
        "--include-dashboard=false", f"--dashboard-port={dashboard}",
        f"--dashboard-agent-listen-port={agent}", f"--ray-client-server-port={client}",
        f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats",
    ], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    started = threading.Event()

    def forward() -> None:  # its output goes on to our stderr for as long as it runs
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stderr.write(line)
            if HEAD_UP in line:
                started.set()

    threading.Thread(target=forward, daemon=True).start()
    seen: set[int] = set()  # what it started (GCS, raylet, ...), to stop should it fail
    deadline = time.monotonic() + HEAD_TIMEOUT_S
    while not started.wait(0.5):
        seen |= descendants([proc.pid])
        if proc.poll() is not None or time.monotonic() > deadline:
            stop([proc], seen)
            return proc, False
    return proc, True


def start_worker(gcs_address: str, temp_dir: str, num_cpus: float, resources: dict[str, float]) -> subprocess.Popen:
    """A non-head node in a process of its own (see the module docstring); does not wait for it."""
    return subprocess.Popen(
        [sys.executable, "-m", "tests.ray_nodes", "worker-node", gcs_address, temp_dir, str(num_cpus),
         json.dumps(resources)],
        cwd=REPO_ROOT, stdout=sys.stderr, stderr=sys.stderr)


def worker_node(gcs_address: str, temp_dir: str, num_cpus: str, resources: str) -> None:
    """The body of a worker-node process: lives until SIGTERM (like `ray start --block`)."""
    import ray._private.node
    from ray._private.parameter import RayParams

    for attempt in range(1, NODE_ATTEMPTS + 1):
        params = RayParams(  # afresh each time: Node fills in ports and paths on the one it is given
            node_ip_address="127.0.0.1", gcs_address=gcs_address, temp_dir=temp_dir, num_cpus=float(num_cpus),
            num_gpus=0, resources=json.loads(resources), object_store_memory=OBJECT_STORE_BYTES,
            node_manager_port=0, include_log_monitor=False, min_worker_port=0, max_worker_port=0,
        )
        try:
            node = ray._private.node.Node(params, head=False, shutdown_at_exit=True, spawn_reaper=True)
            break
        except Exception as e:  # noqa: BLE001 - Ray's fixed wait for its raylet ran out: start again
            if attempt == NODE_ATTEMPTS:
                raise
            print(f"worker node did not start (attempt {attempt} of {NODE_ATTEMPTS}): {e}", flush=True)
            stop([], descendants([os.getpid()]) - {os.getpid()})  # the half-started node's processes
    print(f"worker node up: {node.unique_id}", flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))  # atexit then kills the node's processes
    while True:
        time.sleep(1)


def descendants(pids: list[int]) -> set[int]:
    import psutil

    found = set()
    for pid in pids:
        try:
            p = psutil.Process(pid)
            found |= {pid, *(c.pid for c in p.children(recursive=True))}
        except psutil.Error:
            pass
    return found


def stop(procs: list[subprocess.Popen], extra: set[int]) -> list[str]:
    """Stop our node processes (and anything of theirs still alive); returns what survived."""
    import psutil

    tracked = extra | descendants([p.pid for p in procs])
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(30)
        except subprocess.TimeoutExpired:
            p.kill()
    alive = []
    for pid in tracked - {os.getpid()}:
        try:
            alive.append(psutil.Process(pid))
        except psutil.Error:
            pass
    for p in alive:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, still = psutil.wait_procs(alive, timeout=10)
    for p in still:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(still, timeout=5)
    return [f"{p.pid}" for p in still if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def kill_group(pgid: int) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        time.sleep(2)


if __name__ == "__main__":
    if sys.argv[1] == "worker-node":
        worker_node(*sys.argv[2:6])
