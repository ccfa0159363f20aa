"""Two Ray nodes on 127.0.0.1 (own temp dirs and ports): the stack spreads replicas over both.

The scenario runs in a subprocess (`python tests/integration/test_multinode.py scenario ...`)
because pytest's own process may already hold the session's single-node Ray. That process
starts a head node (`ray start --head --block`) and a worker node, connects with
`ray.init(address=...)`, deploys the stack with `ray_address` set, checks where the replicas
landed and that both served requests, and stops ONLY the processes it started (never `ray stop`,
which stops every Ray on the machine).

The generated Serve config (the RayService path) on two nodes is test_multinode_rollouts.py's: it
deploys the stack from `serve_config()` declaratively and checks that the ingress and controller
land on the pinned node. This test deployed it a second time, on nodes of its own, until
2026-12-02 (about 100 s of CI under load for the same assertions).

The nodes are started and stopped by tests/ray_nodes.py (why a worker is not `ray start`: there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

import pytest

from tests.helpers import free_port as _free_port
from tests.ray_nodes import LOOPBACK_ENV, RAY_CLI, kill_group, start_head, start_worker, stop
from tests.ray_nodes import descendants as _descendants
from tests.ray_nodes import wait as _wait

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENARIO_TIMEOUT_S = 420  # ~2 min on an idle 2-core machine; slack for a loaded CI box

# ---------------------------------------------------------------------------------------------
# The pytest side
# ---------------------------------------------------------------------------------------------
@pytest.mark.skipif(not RAY_CLI.is_file(), reason=f"the `ray` CLI is not installed next to {sys.executable}")
def test_replicas_on_two_nodes_serve_requests(tiny_repo: Path, tmp_path: Path) -> None:
    result_file = tmp_path / "result.json"
    env = {**os.environ, **LOOPBACK_ENV, "PYTHONPATH": str(REPO_ROOT)}
    # Its own session: whatever the scenario leaves behind (it should leave nothing) goes
    # with its process group, and nothing else on the machine is touched.
    proc = subprocess.Popen(
        [sys.executable, __file__, "scenario", str(tiny_repo), str(tmp_path / "registry.db"), str(result_file)],
        cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=SCENARIO_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        kill_group(proc.pid)
    assert proc.returncode == 0 and result_file.is_file(), (
        f"scenario failed (rc {proc.returncode})\nstdout:\n{stdout[-4000:]}\nstderr:\n{stderr[-8000:]}"
    )
    r = json.loads(result_file.read_text())
    print(json.dumps(r, indent=2))  # shown with -s / -rA: where the replicas ran, what they served
    assert len(r["nodes"]) == 2, r
    head, worker = r["nodes"]["head"], r["nodes"]["worker"]
    assert head != worker
    # One ModelVersion replica on each node (each node has 1 CPU; a replica reserves 0.6).
    assert sorted(r["replica_nodes"]) == sorted([head, worker]), r
    assert r["ok_requests"] == r["sent_requests"], r
    # Each node's own temp dir holds its replica's log, and both logged served requests.
    assert r["served_per_node"]["head"] > 0 and r["served_per_node"]["worker"] > 0, r
    assert r["off_loopback"] == [], r["off_loopback"]
    assert r["left_running"] == [], r["left_running"]


# ---------------------------------------------------------------------------------------------
# The subprocess side
# ---------------------------------------------------------------------------------------------
def _served_requests(temp_dir: str) -> int:
    """Requests the ModelVersion replica(s) of this node logged (Serve's per-replica access log).

    Only calls through Serve are logged there: the ingress's short path to the head's Triton
    bypasses the replica, but it takes only the local share (1 of 2 replicas), so both
    replicas still log calls routed by Serve ("predict"; "/v1/predict" behind Serve's proxy).
    """
    ids: set[str] = set()  # by request id: Serve may write a line to more than one log file
    for log in Path(temp_dir).glob("session_*/logs/serve/replica_sentiment-v1_ModelVersion_*.log"):
        ids |= set(re.findall(r"(\S+) -- CALL (?:/v1/)?predict OK ", log.read_text(errors="replace")))
    return len(ids)


def scenario(repo: str, registry: str, result_file: str) -> None:
    head_dir = tempfile.mkdtemp(prefix="mh", dir="/tmp")
    worker_dir = tempfile.mkdtemp(prefix="mw", dir="/tmp")
    gcs_port = _free_port()
    gcs = f"127.0.0.1:{gcs_port}"
    procs: list[subprocess.Popen] = []
    result: dict = {}
    try:
        procs.append(start_head(head_dir, gcs_port, num_cpus=1, resources={"head": 1}))
        procs.append(start_worker(gcs, worker_dir, num_cpus=1, resources={"worker": 1}))

        import ray

        from serving.raypatch import HOOK

        # Both nodes are on this machine: keep replica gRPC servers on loopback, too.
        ray.init(address=gcs, namespace="distilserve", log_to_driver=False,
                 runtime_env={"worker_process_setup_hook": HOOK})
        _wait(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 90, "two alive nodes")
        nodes = {("head" if "head" in n["Resources"] else "worker"): n["NodeID"] for n in ray.nodes() if n["Alive"]}
        result["nodes"] = nodes
        print("nodes:", nodes, file=sys.stderr, flush=True)

        import httpx

        from serving.config import AutoscalingSettings, ServeConfig
        from serving.runner import Runner

        cfg = ServeConfig(
            port=_free_port(), model_repository=Path(repo), registry=Path(registry), models=["sentiment"],
            ray_address=gcs, torch_threads=1, replica_cpus=0.6,
            autoscaling=AutoscalingSettings(min_replicas=2, max_replicas=2),
        )
        Runner(cfg).start()
        url = f"http://127.0.0.1:{cfg.port}"
        _wait(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, 150, "ingress ready")

        from ray import serve

        _wait(lambda: serve.status().applications["sentiment-v1"].status == "RUNNING", 120, "both replicas")
        # The actor table straight from the GCS: the state API (ray.util.state) needs the
        # dashboard, which these nodes do not run. Ray is pinned (==2.60.0) in pyproject.toml.
        from ray._private.state import actors

        result["replica_nodes"] = [
            a["Address"]["NodeID"] for a in actors(actor_state_name="ALIVE").values()
            if a["ActorClassName"] == "ServeReplica:sentiment-v1:ModelVersion"
        ]

        # Concurrent requests: Serve's power-of-two router sends them to both replicas.
        import asyncio

        async def send(n: int) -> list[int]:
            async with httpx.AsyncClient(timeout=60) as client:
                rs = await asyncio.gather(*[client.post(f"{url}/v1/predict", json={"inputs": [f"text {i}"] * 4})
                                            for i in range(n)])
            return [r.status_code for r in rs]

        codes: list[int] = []
        for _ in range(6):
            codes += asyncio.run(send(16))
        result["sent_requests"] = len(codes)
        result["ok_requests"] = codes.count(200)
        time.sleep(2)  # replica access logs are flushed asynchronously
        result["served_per_node"] = {"head": _served_requests(head_dir), "worker": _served_requests(worker_dir)}

        sys.path.insert(0, str(REPO_ROOT))
        from tests.helpers import listeners_off_loopback

        ours = _descendants([p.pid for p in procs]) | {os.getpid()} | _descendants([os.getpid()])
        result["off_loopback"] = listeners_off_loopback(ours)
        serve.shutdown()
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        # Disconnect before the nodes go: a driver whose GCS vanished aborts the process.
        if "ray" in sys.modules:
            import ray

            ray.shutdown()
        result["left_running"] = stop(procs, set())
        shutil.rmtree(head_dir, ignore_errors=True)
        shutil.rmtree(worker_dir, ignore_errors=True)
        Path(result_file).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup in `finally`
    scenario(*sys.argv[2:5])
