"""Rollouts and faults on two Ray nodes, with no CLI process and no driver alive.

Node A (the head: `head` and `ingress` resources, no CPUs) runs the ingress and the controller;
node B (2 CPUs, no custom resources) runs every version replica. Both are Ray nodes of ours on
127.0.0.1 (tests/ray_nodes.py); the registry is a real PostgreSQL server on loopback
(tests/services.py). The stack goes up the RayService way: the generated Serve config
(serving/deploy_config.py) deployed through Serve's own config API, after which this process
disconnects from Ray. From then on it only sends HTTP requests, kills processes, and reads the
registry to see what happened:

  canary    v1 -> v2 through POST /admin/.../rollouts: the controller steps it to 100 %.
  broken    a candidate that fails every long text (v4): the controller rolls it back.
  ctl-kill  mid-canary v2 -> v3, SIGKILL the controller's replica process: Serve restarts it,
            the new leader resumes the rollout from the registry and finishes it.
  raylet    SIGKILL node B's raylet under load (every replica is on B), then restart node B as
            a pod would be restarted: count the requests that failed and when service returned.

Load: --users threads, each posting one long text to /v1/predict after another over one
connection (the broken version fails on long texts); every answer is recorded with its
client-side start/end, status and serving version.

  .venv/bin/python loadtests/bench_multinode.py --out /tmp/multinode.json

The run's figures go to --out (JSON); BENCH_ROLLBACK.md reports them. The integration test
tests/integration/test_multinode_rollouts.py runs the same scenario and asserts its outcomes.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections import Counter
from pathlib import Path
from typing import NamedTuple

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import httpx  # noqa: E402

from tests.helpers import free_port  # noqa: E402
from tests.ray_nodes import LOOPBACK_ENV, descendants, start_head, start_worker, stop, wait  # noqa: E402

MODEL = "sentiment"
# ~180 tokens: longer than the 128 position embeddings; healthy versions truncate to their max_seq_len.
LONG = " ".join(["the movie was good but the ending was not great at all"] * 15)
POLICY = {"strategy": "canary", "step_weights": [20, 60, 100], "step_interval_s": 3, "max_inconclusive": 10}
GATES = {"min_requests": 5, "min_labels": 1, "max_p99_ratio": 50.0, "max_accuracy_drop": None}
CONTROLLER_TITLE = "ServeReplica:controller:Controller"


# ---------------------------------------------------------------------------------------------
# Pure: what the records say about one fault
# ---------------------------------------------------------------------------------------------
class Record(NamedTuple):
    start: float  # time.monotonic() when the request was sent
    end: float  # ... when its answer (or error) came back
    status: int  # HTTP status; 0 = no response (connection error, client timeout)
    version: str  # the version that answered ("" when none did)
    detail: str = ""  # the start of a failed answer's body (or the client error)


def around_fault(records: list[Record], t_fault: float) -> dict:
    """Requests around a fault at `t_fault` (same clock as the records), and when service returned.

    in_flight: sent before the fault, answered after it. after: sent after it. `recovered_s` is
    the first answer of a request sent after the fault that succeeded, minus t_fault (None if
    none did); `last_failure_s` the end of the last failed request, minus t_fault.
    """
    before = [r for r in records if r.end < t_fault]
    in_flight = [r for r in records if r.start < t_fault <= r.end]
    after = [r for r in records if r.start >= t_fault]
    ok_after = sorted(r.end for r in after if r.status == 200)
    failed = [r for r in records if r.status != 200 and r.end >= t_fault]
    # The longest stretch after the fault with no successful answer, and when it ended: the
    # outage as clients saw it (requests that waited through it and then succeeded included).
    ok_ends = sorted(r.end for r in records if r.status == 200 and r.end >= t_fault)
    gaps = [(b - a, b) for a, b in zip([t_fault, *ok_ends], ok_ends, strict=False)]
    gap, gap_end = max(gaps) if gaps else (None, None)
    return {
        "failed_before": sum(r.status != 200 for r in before),
        "in_flight": len(in_flight),
        "in_flight_failed": sum(r.status != 200 for r in in_flight),
        "in_flight_failed_by_status": dict(sorted(Counter(str(r.status) for r in in_flight if r.status != 200).items())),
        "sent_after": len(after),
        "failed_after": sum(r.status != 200 for r in after),
        "failed_after_by_status": dict(sorted(Counter(str(r.status) for r in after if r.status != 200).items())),
        "failed_details": sorted({r.detail for r in failed})[:5],
        "max_wait_after_s": round(max(r.end - r.start for r in after), 3) if after else None,
        "longest_gap_s": round(gap, 3) if gap is not None else None,
        "service_back_s": round(gap_end - t_fault, 3) if gap_end is not None else None,
        "recovered_s": round(ok_after[0] - t_fault, 3) if ok_after else None,
        "last_failure_s": round(max(r.end for r in failed) - t_fault, 3) if failed else None,
    }


def summarize(records: list[Record]) -> dict:
    """Counts of a phase's requests: by status, and which versions answered."""
    return {
        "requests": len(records),
        "by_status": dict(sorted(Counter(str(r.status) for r in records).items())),
        "by_version": dict(sorted(Counter(r.version for r in records if r.status == 200).items())),
        "failed_details": sorted({r.detail for r in records if r.status != 200})[:5],
    }


# The figures BENCH_ROLLBACK.md reports, as (label, path into a result file).
FIGURES = [
    ("deploy, generated config to first answer (s)", ("deploy_s",)),
    ("canary 20/60/100 to promoted (s)", ("canary", "duration_s")),
    ("canary: failed requests", ("canary", "load", "failed")),
    ("broken canary to rolled back (s)", ("broken", "duration_s")),
    ("broken canary: 500s from the candidate", ("broken", "load", "by_status", "500")),
    ("controller kill: new replica up (s)", ("ctl_kill", "controller_restarted_s")),
    ("controller kill: rollout start to promoted (s)", ("ctl_kill", "duration_s")),
    ("controller kill: failed requests", ("ctl_kill", "load", "failed")),
    ("controller kill: longest gap between answers (s)", ("ctl_kill", "around_fault", "longest_gap_s")),
    ("raylet kill: requests in flight", ("raylet", "in_flight")),
    ("raylet kill: in flight that failed", ("raylet", "in_flight_failed")),
    ("raylet kill: sent after it that failed (503)", ("raylet", "failed_after")),
    ("raylet kill: last failure after the kill (s)", ("raylet", "last_failure_s")),
    ("raylet kill: longest wait of a request (s)", ("raylet", "max_wait_after_s")),
    ("raylet kill: node B restarted after (s)", ("raylet", "node_b_restarted_s")),
    ("raylet kill: answers again after the kill (s)", ("raylet", "service_back_s")),
]


def figure(result: dict, path: tuple[str, ...]) -> float | None:
    """One figure of a result file; ("load", "failed") counts the non-200 answers of a phase."""
    node: object = result
    for key in path:
        if key == "failed" and isinstance(node, dict):
            return sum(n for status, n in node["by_status"].items() if status != "200")
        if not isinstance(node, dict):
            return None
        node = node.get(key, 0 if key in ("500",) else None)
    return node if isinstance(node, (int, float)) else None


def _fmt(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else f"{v:.2f}"


def summary_table(results: list[dict]) -> str:
    """Markdown: each figure's median and range over the runs, and every run's value."""
    import statistics

    rows = ["| figure | median | range | runs |", "|---|---|---|---|"]
    for label, path in FIGURES:
        values = [figure(r, path) for r in results]
        got = [v for v in values if v is not None]
        med = _fmt(statistics.median(got)) if got else "-"
        rng = f"{_fmt(min(got))} - {_fmt(max(got))}" if got else "-"
        rows.append(f"| {label} | {med} | {rng} | {', '.join('-' if v is None else _fmt(v) for v in values)} |")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
# I/O: load, processes, the registry
# ---------------------------------------------------------------------------------------------
class Load:
    """`users` threads posting LONG to /v1/predict one after another; every answer recorded."""

    def __init__(self, url: str, users: int) -> None:
        self.url = url
        self.records: list[Record] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(users)]

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    r = client.post(f"{self.url}/v1/predict", json={"model": MODEL, "inputs": [LONG]})
                    status, detail = r.status_code, ""
                    version = r.json().get("version", "") if status == 200 else ""
                    if status != 200:
                        detail = f"{status} {r.text[:160]}"
                except (httpx.HTTPError, ValueError) as e:
                    status, version, detail = 0, "", repr(e)[:160]
                self.records.append(Record(t0, time.monotonic(), status, version, detail))
                if status != 200:
                    time.sleep(0.1)  # a refused client backs off a little, as Retry-After asks

    def since(self, t: float) -> list[Record]:
        return [r for r in list(self.records) if r.start >= t]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=90)


def _processes_titled(title: str, roots: list[int]) -> list[int]:
    import psutil

    found = []
    for pid in descendants(roots):
        try:
            if title in " ".join(psutil.Process(pid).cmdline()):
                found.append(pid)
        except psutil.Error:
            pass
    return sorted(found)


def _named(name: str, root: int) -> list[int]:
    import psutil

    out = []
    for pid in descendants([root]):
        try:
            if psutil.Process(pid).name() == name:
                out.append(pid)
        except psutil.Error:
            pass
    return out


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class Cluster:
    """Node A, node B and the PostgreSQL registry, all ours, all on 127.0.0.1."""

    def __init__(self, work: Path) -> None:
        from tests.services import PostgresServer, postgres_bindir

        bindir = postgres_bindir()
        if bindir is None:
            raise SystemExit("no PostgreSQL server binaries (apt-get install postgresql)")
        self.work = work
        self.pg = PostgresServer(bindir)
        self.head_dir = tempfile.mkdtemp(prefix="mnh", dir="/tmp")
        self.worker_dirs: list[str] = []
        self.head: subprocess.Popen | None = None
        self.worker: subprocess.Popen | None = None
        self.dead: list[subprocess.Popen] = []
        try:
            self.registry_url = self.pg.create_database("multinode")
            self.gcs = f"127.0.0.1:{free_port()}"
            self.head = start_head(self.head_dir, int(self.gcs.rsplit(":", 1)[1]), num_cpus=0,
                                   resources={"head": 1, "ingress": 1})
            self.start_worker()
        except BaseException:
            self.close()  # a half-started cluster leaves no server or node behind
            raise

    def start_worker(self) -> None:
        d = tempfile.mkdtemp(prefix="mnw", dir="/tmp")
        self.worker_dirs.append(d)
        self.worker = start_worker(self.gcs, d, num_cpus=2, resources={})

    def worker_pid(self) -> int:
        assert self.worker is not None
        return self.worker.pid

    def close(self) -> list[str]:
        procs = [p for p in (self.head, *self.dead, self.worker) if p is not None]
        left = stop(procs, set())
        for d in [self.head_dir, *self.worker_dirs]:
            shutil.rmtree(d, ignore_errors=True)
        self.pg.close()
        return left


def deploy(cluster: Cluster, repo: Path, port: int) -> dict:
    """The generated Serve config, deployed through Serve's config API; then this driver leaves."""
    import ray
    from ray import serve
    from ray._private.state import actors
    from ray.serve.context import _get_global_client
    from ray.serve.schema import ServeDeploySchema

    from serving.config import AutoscalingSettings, ServeConfig
    from serving.deploy_config import DeployConfig, serve_config
    from serving.raypatch import HOOK

    ray.init(address=cluster.gcs, namespace="distilserve", log_to_driver=False,
             runtime_env={"worker_process_setup_hook": HOOK})
    try:
        wait(lambda: len([n for n in ray.nodes() if n["Alive"]]) == 2, 90, "two alive nodes")
        dc = DeployConfig(
            serve=ServeConfig(port=port, model_repository=repo, registry=cluster.registry_url, models=[MODEL],
                              torch_threads=1, replica_cpus=0.4, rollout_tick_s=1.0, rollback_warm_s=600,
                              autoscaling=AutoscalingSettings(min_replicas=1, max_replicas=1)),
            versions={MODEL: ["1"]}, http_host="127.0.0.1", proxy_location="HeadOnly",
        )
        serve.start(http_options={"host": "127.0.0.1", "port": port}, proxy_location="HeadOnly")
        _get_global_client().deploy_apps(ServeDeploySchema.model_validate(serve_config(dc)))
        url = f"http://127.0.0.1:{port}"
        wait(lambda: httpx.post(f"{url}/v1/predict", json={"inputs": ["good"]}, timeout=10).status_code == 200,
             300, "the deployed stack to answer")
        head = next(n["NodeID"] for n in ray.nodes() if n["Alive"] and "head" in n["Resources"])
        placed: dict[str, list[str]] = {}
        for a in actors(actor_state_name="ALIVE").values():
            name = a["ActorClassName"]
            if name.startswith("ServeReplica:"):
                placed.setdefault(name.removeprefix("ServeReplica:"), []).append(
                    "A" if a["Address"]["NodeID"] == head else "B")
        return {"placement": placed}
    finally:
        ray.shutdown()  # from here on no driver and no CLI process is connected


def admin(url: str, token: str, path: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/admin/models/{MODEL}{path}", json=body, timeout=30,
                      headers={"Authorization": f"Bearer {token}"})


def run_canary(url: str, token: str, reg, version: str, load: Load, timeout: float,  # noqa: ANN001
               mid_step=None) -> dict:  # noqa: ANN001 - a callable run once the canary has traffic
    """Start a canary through the admin API; wait for the controller to finish it."""
    t0 = time.monotonic()
    r = admin(url, token, "/rollouts", {"version": version, "policy": POLICY, "gate_overrides": GATES})
    if r.status_code != 200:
        raise RuntimeError(f"starting the canary of v{version}: {r.status_code} {r.text}")
    rollout_id = r.json()["rollout_id"]
    out: dict = {"version": version}
    if mid_step is not None:
        wait(lambda: 0 < reg.get_traffic(MODEL).get(version, 0) < 100, timeout, f"v{version} mid-canary",
             interval=0.2)
        out |= mid_step()
    try:
        wait(lambda: reg.load_active_rollout(MODEL) is None, timeout, f"the canary of v{version} to end",
             interval=0.5)
    except AssertionError as e:  # timed out
        seen = [f"{ev.kind}: {ev.message}" for ev in reversed(reg.events(MODEL, limit=30))]
        raise AssertionError(f"{e}; traffic {reg.get_traffic(MODEL)}; load {summarize(load.since(t0))}; "
                           "events:\n" + "\n".join(seen)) from None
    out["duration_s"] = round(time.monotonic() - t0, 2)
    time.sleep(2.0)  # requests the ingress routed before its next snapshot count in this phase
    events = reg.events(MODEL, rollout_id=rollout_id)
    finished = [e for e in events if e.kind == "rollout.finished"]
    out["phase"] = finished[0].data.get("phase") if finished else None
    out["events"] = [e.kind for e in reversed(events)]
    rollback = [e.message for e in events if e.kind == "rollout.rollback"]
    out["rollback_reason"] = rollback[0] if rollback else None
    out["traffic"] = {v: w for v, w in reg.get_traffic(MODEL).items() if w > 0}
    out["load"] = summarize(load.since(t0))
    if "t_fault" in out:
        out["around_fault"] = around_fault(load.since(t0), out.pop("t_fault"))
    return out


def kill_controller(roots: list[int]) -> dict:
    """SIGKILL the controller's replica process; wait for Serve to start another one."""
    pids = _processes_titled(CONTROLLER_TITLE, roots)
    if len(pids) != 1:
        raise RuntimeError(f"expected one controller replica process, found {pids}")
    t = time.monotonic()
    os.kill(pids[0], signal.SIGKILL)
    wait(lambda: [p for p in _processes_titled(CONTROLLER_TITLE, roots) if p != pids[0]], 120,
         "Serve to restart the controller", interval=0.2)
    return {"t_fault": t, "controller_killed_pid": pids[0], "controller_restarted_s": round(time.monotonic() - t, 2)}


def kill_raylet(cluster: Cluster, load: Load, url: str, restart_after_s: float, settle_s: float) -> dict:
    """SIGKILL node B's raylet under load, restart node B after `restart_after_s`, wait for service."""
    node_b = cluster.worker_pid()
    raylets = _named("raylet", node_b)
    tritons_before = _named("tritonserver", node_b)
    if len(raylets) != 1:
        raise RuntimeError(f"expected one raylet under node B ({node_b}), found {raylets}")
    t_kill = time.monotonic()
    os.kill(raylets[0], signal.SIGKILL)
    time.sleep(restart_after_s)
    # The pod's container exits with its raylet; what is left of it goes too (as kubelet would).
    assert cluster.worker is not None
    tritons_alive = [pid for pid in tritons_before if _alive(pid)]
    cluster.dead.append(cluster.worker)
    stop([cluster.worker], set(tritons_before))
    t_restart = time.monotonic()
    cluster.start_worker()
    wait(lambda: any(r.start > t_restart and r.status == 200 for r in list(load.records)), 300,
         "a request answered after node B's restart")
    t_back = time.monotonic()
    time.sleep(settle_s)  # steady again: later requests must all succeed
    records = [r for r in list(load.records) if r.start >= t_kill - 5]
    out = around_fault(records, t_kill)
    out["tritons_on_b_at_kill"] = len(tritons_before)
    out["tritons_alive_before_restart"] = len(tritons_alive)
    out["restart_after_s"] = restart_after_s
    out["node_b_restarted_s"] = round(t_restart - t_kill, 2)
    out["back_after_restart_s"] = round(t_back - t_restart, 2)
    out["settled"] = summarize([r for r in load.since(t_back)])
    return out


def build_repo(repo: Path, tiny_repo: Path | None) -> None:
    """v1, v2: quick teachers (two seeds); v3: v1's weights under another number (a third training
    run cost about 10 s and nothing here tells the weights apart); v4: v2 with a card whose
    max_seq_len (512) exceeds the model's 128 position embeddings, so every long text fails inside
    the model with a real 500."""
    from tests.helpers import build_tiny_repo

    if tiny_repo is not None:
        shutil.copytree(tiny_repo / MODEL, repo / MODEL, symlinks=True)
    else:
        build_tiny_repo(repo, versions=2)
    for src, version, changes in (("1", "3", {}), ("2", "4", {"max_seq_len": 512})):
        dst = repo / MODEL / version
        shutil.copytree(repo / MODEL / src, dst, symlinks=True)
        card = json.loads((dst / "card.json").read_text())
        (dst / "card.json").write_text(json.dumps({**card, "version": version, **changes}))


def scenario(args: argparse.Namespace) -> dict:
    token = secrets.token_urlsafe(16)
    os.environ.update(LOOPBACK_ENV)
    os.environ["DISTILSERVE_ADMIN_TOKEN"] = token  # the nodes' environment, as a Secret would set it
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    work = Path(tempfile.mkdtemp(prefix="ds-multinode-"))
    result: dict = {"started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "users": args.users,
                    "loadavg_start": list(os.getloadavg())}
    cluster = None
    try:
        repo = work / "repo"
        build_repo(repo, Path(args.tiny_repo) if args.tiny_repo else None)
        t0 = time.monotonic()
        cluster = Cluster(work)
        port = free_port()
        result |= deploy(cluster, repo, port)
        result["deploy_s"] = round(time.monotonic() - t0, 1)
        result["driver_connected_after_deploy"] = "ray" in sys.modules and __import__("ray").is_initialized()
        url = f"http://127.0.0.1:{port}"
        from serving.registry import Registry

        reg = Registry(cluster.registry_url)
        assert cluster.head is not None
        roots = [cluster.head.pid]
        with Load(url, args.users) as load:
            time.sleep(3)
            result["canary"] = run_canary(url, token, reg, "2", load, args.phase_timeout)
            result["broken"] = run_canary(url, token, reg, "4", load, args.phase_timeout)
            result["ctl_kill"] = run_canary(url, token, reg, "3", load, args.phase_timeout,
                                            mid_step=lambda: kill_controller(roots))
            result["raylet"] = kill_raylet(cluster, load, url, args.restart_after, args.settle)
            result["replica_nodes_end"] = {
                "A": len(_processes_titled("ServeReplica:sentiment-", [cluster.head.pid])),
                "B": len(_processes_titled("ServeReplica:sentiment-", [cluster.worker_pid()])),
            }
        result["all"] = summarize(load.records)
    except BaseException:
        traceback.print_exc()
        result["error"] = traceback.format_exc()[-3000:]
        raise
    finally:
        result["loadavg_end"] = list(os.getloadavg())
        if cluster is not None:
            if "error" in result:  # the controller's own account of what went wrong
                logs = sorted(Path(cluster.head_dir).glob("session_*/logs/serve/replica_controller_*.log"))
                lines = [x for x in (logs[-1].read_text(errors="replace") if logs else "").splitlines()
                         if " -- CALL " not in x]
                result["controller_log_tail"] = "\n".join(lines[-60:])
            result["left_running"] = cluster.close()
        shutil.rmtree(work, ignore_errors=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", help="the results file (JSON)")
    p.add_argument("--summarize", nargs="+", metavar="RESULT", help="print the median/range table of these "
                                                                    "result files instead of running")
    p.add_argument("--users", type=int, default=4, help="concurrent clients (default 4)")
    p.add_argument("--tiny-repo", default=None, help="a build_tiny_repo(versions=2) folder to copy (else built)")
    p.add_argument("--restart-after", type=float, default=5.0, help="seconds between the raylet kill and node B's "
                                                                     "restart (default 5)")
    p.add_argument("--settle", type=float, default=10.0, help="seconds of load after service returned (default 10)")
    p.add_argument("--phase-timeout", type=float, default=300.0, help="seconds each phase may take (default 300)")
    args = p.parse_args(argv)
    if args.summarize:
        print(summary_table([json.loads(Path(f).read_text()) for f in args.summarize]))
        return 0
    if not args.out:
        p.error("--out is required to run the scenario")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the cleanup in `finally`
    r = scenario(args)
    print(json.dumps({k: v for k, v in r.items() if k != "all"}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
