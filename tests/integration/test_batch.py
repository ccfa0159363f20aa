"""Batch inference, for real: a `distilserve batch run` killed half-way and resumed, then its
predictions served from the cache by the Ray Serve stack — and not once the version is no
longer live.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import psutil
import pyarrow.parquet as pq
import pytest

from serving.batch import shards as sh
from serving.config import ServeConfig
from tests.helpers import delete_serve_apps, free_port, wait_for

ROWS, SHARD_ROWS = 400, 20  # 20 shards
DISTILSERVE = Path(sys.executable).with_name("distilserve")


@pytest.fixture(scope="module")
def texts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    from distill.data import load_frame

    frame = load_frame().head(ROWS)[["text"]]
    path = tmp_path_factory.mktemp("batch-in") / "tweets.parquet"
    frame.to_parquet(path, index=False)
    return path, frame["text"].tolist()


RAY_AGENTS = ("ray::DashboardAgent", "ray::RuntimeEnvAgent")


def _name(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline()) or p.name()
    except psutil.Error:
        return "(gone)"


def _done(out: Path) -> int:
    m = sh.load_manifest(out)
    return len(m.done) if m else 0


@pytest.fixture(scope="module")
def job(ray_session, tiny_repo: Path, texts, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Start a real job in its own process (own local Ray), SIGKILL it after some shards, resume it."""
    from serving.batch.job import JobSpec, run_job

    path, _ = texts
    out = tmp_path_factory.mktemp("batch-out")
    ray_tmp = tempfile.mkdtemp(prefix="rb", dir="/tmp")  # short: Ray's socket paths
    log = out.parent / "first-run.log"
    cmd = [str(DISTILSERVE), "batch", "run", "--model", "sentiment:1", "--input", str(path), "--output", str(out),
           "--model-repository", str(tiny_repo), "--shard-rows", str(SHARD_ROWS), "--actor-cpus", "0.5",
           "--torch-threads", "1", "--max-rows-per-s", "60", "--ray-temp-dir", ray_tmp, "--no-progress",
           "--executor", "ray"]  # Ray Data with a private Triton (auto would run it without Ray: no cluster)
    # The throttle (60 rows/s, 400 rows) keeps the job running ~7 s once started, so the kill lands mid-way.
    with open(log, "wb") as f:
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True)
    family: list[psutil.Process] = []
    try:
        wait_for(lambda: proc.poll() is None and _done(out) >= 5, 420, "5 shards done by the first run", 0.05)
        family = psutil.Process(proc.pid).children(recursive=True)  # Ray, its workers, tritonserver
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        killed = sh.load_manifest(out)
        # What the job started dies with it: Ray's node (fate-sharing), the actor, its tritonserver
        # (PDEATHSIG). Ray's two agents notice their raylet is gone only after a while (over a
        # minute on a busy host), so they are not waited for; the finally below ends them.
        essential = [p for p in family if not _name(p).startswith(RAY_AGENTS)]
        assert any("tritonserver" in _name(p) for p in essential), [_name(p) for p in family]
        wait_for(lambda: not [p for p in essential if p.is_running() and p.status() != psutil.STATUS_ZOMBIE],
                 120, "the killed job's processes to exit")
    except BaseException:
        print(log.read_text()[-4000:])
        raise
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        for p in family:  # only what this test started, by pid
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        shutil.rmtree(ray_tmp, ignore_errors=True)
    spec = JobSpec(model="sentiment", version="1", input=path, output=out, model_repository=tiny_repo,
                   shard_rows=SHARD_ROWS, actor_cpus=0.5, torch_threads=1, progress=False)
    resumed = run_job(spec)  # in the session's Ray this time
    return {"out": out, "killed": killed, "resumed": resumed, "spec": spec}


def test_killed_job_resumes_with_every_row_exactly_once(job, texts) -> None:
    _, rows = texts
    killed, resumed = job["killed"], job["resumed"]
    assert 5 <= len(killed.done) < ROWS // SHARD_ROWS, "the kill must land half-way"
    assert resumed.complete and resumed.rows_done == ROWS
    # The second run ran exactly the shards the first had not recorded.
    assert [r["pending_shards"] for r in resumed.runs] == [20, 20 - len(killed.done)]
    table = pq.read_table(job["out"])  # the folder reads as one data set (manifest is skipped)
    assert table.num_rows == ROWS
    ids = table.column("row_id").to_pylist()
    assert sorted(ids) == list(range(ROWS))  # no duplicated and no missing row
    by_id = dict(zip(ids, table.column("input_key").to_pylist(), strict=True))
    assert all(by_id[i] == sh.input_key(t) for i, t in enumerate(rows))
    assert set(table.column("version").to_pylist()) == {"1"}
    assert not list(job["out"].glob(".*" + sh.TMP_SUFFIX))


def test_rerunning_a_finished_job_does_nothing_and_another_job_is_refused(job) -> None:
    from serving.batch.job import run_job

    before = sorted((p.name, p.stat().st_mtime_ns) for p in job["out"].glob("shard-*"))
    assert run_job(job["spec"]).rows_done == ROWS
    assert sorted((p.name, p.stat().st_mtime_ns) for p in job["out"].glob("shard-*")) == before
    with pytest.raises(ValueError, match="version: '1' in DIR, '2' now"):
        run_job(job["spec"].model_copy(update={"version": "2"}))


@pytest.fixture(scope="module")
def stack(ray_session, tiny_repo: Path, job, tmp_path_factory: pytest.TempPathFactory, admin_token: str):
    from serving.batch.cache import PredictionCache, load_from
    from serving.runner import Runner

    cache_path = tmp_path_factory.mktemp("cache") / "predictions.db"
    assert load_from(PredictionCache(cache_path), job["out"]) == ("sentiment", "1", ROWS)
    cfg = ServeConfig(port=free_port(), model_repository=tiny_repo,
                      registry=tmp_path_factory.mktemp("reg") / "registry.db", models=["sentiment"],
                      admin_token=admin_token, torch_threads=1, replica_cpus=0.1, prediction_cache=str(cache_path))
    runner = Runner(cfg)
    runner.start()
    url = f"http://127.0.0.1:{cfg.port}"
    wait_for(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, 120, "ingress ready")
    yield {"url": url, "runner": runner, "auth": {"Authorization": f"Bearer {admin_token}"}}
    delete_serve_apps()


def _predict(stack: dict, inputs: list[str], **kw: str) -> dict:
    r = httpx.post(f"{stack['url']}/v1/predict", json={"model": "sentiment", "inputs": inputs, **kw}, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()


def _cache_hits(stack: dict, version: str) -> float:
    text = httpx.get(f"{stack['url']}/metrics").text
    m = re.search(rf'distilserve_cache_hits_total\{{model="sentiment",version="{version}"\}} (\S+)', text)
    return float(m.group(1)) if m else 0.0


def test_known_inputs_of_the_live_version_are_served_from_the_cache(stack, texts) -> None:
    _, rows = texts
    known = [rows[3], rows[250]]
    hit = _predict(stack, known)
    assert hit["cached"] is True and hit["version"] == "1"
    assert _cache_hits(stack, "1") == 2
    # One unknown input: the model answers them all, and agrees with what the batch job wrote.
    miss = _predict(stack, [*known, "a text the batch job never saw"])
    assert miss["cached"] is False and miss["version"] == "1"
    for cached, live in zip(hit["predictions"], miss["predictions"][:2], strict=True):
        assert cached["label"] == live["label"]
        assert cached["scores"] == pytest.approx(live["scores"], abs=1e-5)
    assert _cache_hits(stack, "1") == 2  # misses are not hits
    # Feedback works for cached answers too (the prediction was recorded).
    r = httpx.post(f"{stack['url']}/v1/feedback", json={"request_id": hit["request_id"] + ".0", "label": "neutral"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(("executor", "ran"), [("auto", "local"), ("ray", "ray")])
def test_a_serving_backend_job_uses_the_running_replicas_triton(stack, job, texts, tiny_repo: Path,
                                                              tmp_path: Path, executor: str, ran: str) -> None:
    """`--backend serving`: no tritonserver of its own; the live replica's Triton answers, the same as
    the job with its own Triton did, whether the driver calls it (the replica is on this node, so auto
    runs locally) or a Ray Data actor pinned to the replica's node does."""
    import threading

    from distilserve.core.names import app_name
    from serving.backends import ServingTritonBackend
    from serving.batch.job import JobSpec, run_job
    from serving.transport.endpoints import read_all

    path, _ = texts
    published = {e.grpc for e in read_all() if e.app == app_name("sentiment", "1")}
    assert published, "the stack's replica publishes its Triton"
    me = psutil.Process()

    def ours() -> list[psutil.Process]:  # below this process: the job and the stack run in its Ray
        return [p for p in me.children(recursive=True) if "tritonserver" in _name(p)]

    before = {p.pid for p in ours()}
    started: dict[int, tuple[str, str]] = {}  # pid -> (command line, parent's process name)
    stop = threading.Event()

    def watch() -> None:  # any tritonserver of ours appearing while the job runs
        while not stop.is_set():
            for p in ours():
                if p.pid not in before and p.pid not in started:
                    try:
                        parent = p.parent()
                        started[p.pid] = (" ".join(p.cmdline()), parent.name() if parent else "")
                    except psutil.Error:
                        started[p.pid] = ("", "")
            stop.wait(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        spec = JobSpec(model="sentiment", version="1", input=path, output=tmp_path / "out", model_repository=tiny_repo,
                       backend="serving", shard_rows=100, actor_cpus=0.1, progress=False, executor=executor)
        manifest = run_job(spec)
    finally:
        stop.set()
        watcher.join(5)
    assert manifest.complete and manifest.rows_done == ROWS
    assert manifest.runs[-1]["endpoint"] in published
    assert manifest.runs[-1]["executor"] == ran
    # It shares the Triton with live traffic: short calls, one at a time, while live traffic is seen.
    assert (manifest.runs[-1]["max_call_ms"], manifest.runs[-1]["inflight"]) == (100.0, 1)
    # What tells it whether anyone else uses the Triton: the replica's statistics, which count the
    # job's own calls (each at most 64 texts) among the requests served.
    served = asyncio.run(ServingTritonBackend("sentiment", "1", manifest.runs[-1]["endpoint"]).requests_served())
    assert served is not None and served >= ROWS / 64
    # A replica Serve added meanwhile (the autoscaler sees the job's load in Triton's counters, or a
    # replica was replaced on a loaded machine) starts a Triton too: its parent is a Serve replica
    # (Ray names the process "ray::ServeReplica:<app>:<deployment>"), never the job's driver or actors.
    jobs = {pid: (cmd, parent) for pid, (cmd, parent) in started.items() if not parent.startswith("ray::ServeRepl")}
    assert not jobs, f"a serving-backend job must not start a tritonserver: {jobs}"
    own = pq.read_table(job["out"]).sort_by("row_id")
    served = pq.read_table(tmp_path / "out").sort_by("row_id")
    assert served.column("label").to_pylist() == own.column("label").to_pylist()
    for a, b in zip(served.column("scores").to_pylist()[:50], own.column("scores").to_pylist()[:50], strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_a_job_without_a_cluster_runs_locally_and_writes_what_the_ray_job_wrote(job, texts, tiny_repo: Path,
                                                                               tmp_path: Path) -> None:
    """`distilserve batch run` with no --ray-address and the default executor: one Predictor with its
    own tritonserver in the CLI's process, and no Ray started (its temp dir stays empty); the same rows,
    labels and scores as the resumed Ray job."""
    path, _ = texts
    ray_tmp = Path(tempfile.mkdtemp(prefix="rl", dir="/tmp"))
    try:
        subprocess.run([str(DISTILSERVE), "batch", "run", "--model", "sentiment:1", "--input", str(path),
                        "--output", str(tmp_path / "out"), "--model-repository", str(tiny_repo),
                        "--shard-rows", str(SHARD_ROWS), "--torch-threads", "1", "--ray-temp-dir", str(ray_tmp),
                        "--no-progress"], check=True, timeout=300)
        assert not list(ray_tmp.iterdir()), "a job with its own backend and no cluster started a Ray"
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
    manifest = sh.load_manifest(tmp_path / "out")
    assert manifest is not None and manifest.complete and manifest.rows_done == ROWS
    assert manifest.runs[-1]["executor"] == "local" and manifest.runs[-1]["max_call_ms"] is None  # own Triton
    own = pq.read_table(job["out"]).sort_by("row_id")
    local = pq.read_table(tmp_path / "out").sort_by("row_id")
    assert local.column("input_key").to_pylist() == own.column("input_key").to_pylist()
    assert local.column("label").to_pylist() == own.column("label").to_pylist()
    for a, b in zip(local.column("scores").to_pylist()[:50], own.column("scores").to_pylist()[:50], strict=True):
        assert a == pytest.approx(b, abs=1e-5)


def test_no_cached_answer_once_the_version_is_not_live(stack, texts) -> None:
    _, rows = texts
    r = httpx.post(f"{stack['url']}/admin/models/sentiment/deploy", json={"version": "2"}, headers=stack["auth"])
    assert r.status_code == 200, r.text
    stack["runner"].reconcile()
    wait_for(lambda: httpx.get(f"{stack['url']}/v2/models/sentiment/versions/2/ready").status_code == 200,
             180, "version 2 ready")
    r = httpx.post(f"{stack['url']}/admin/models/sentiment/traffic", json={"weights": {"2": 100}},
                   headers=stack["auth"])
    assert r.status_code == 200, r.text
    wait_for(lambda: _predict(stack, [rows[3]])["version"] == "2", 30, "traffic on version 2")
    after = _predict(stack, [rows[3]])
    assert after["cached"] is False and after["version"] == "2"
    # Version 1 is still deployed (rollback target) and its answers are in the cache, but it
    # is not live: pinning it gets the model's answer, never the cache's.
    pinned = _predict(stack, [rows[3]], version="1")
    assert pinned["version"] == "1" and pinned["cached"] is False
    assert _cache_hits(stack, "1") == 2 and _cache_hits(stack, "2") == 0
