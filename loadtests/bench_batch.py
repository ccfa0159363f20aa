"""Batch throughput as a ratio of the raw in-process batched model, measured in one run.

    .venv/bin/python loadtests/bench_batch.py --rows 2000            # real model, 2,000 tweets
    .venv/bin/python loadtests/bench_batch.py --rows 0 --backend torch   # whole corpus

1. raw: the version's own `Classifier` (loaded from the model repository's model.py, the
   code Triton runs) on the same texts in batches of `--batch`, with `--torch-threads`;
2. batch: `distilserve batch run` as a subprocess (by default Ray Data, one actor owning a
   tritonserver with the same thread count; `--backend`/`--executor` choose other ways), whose
   manifest records when shards finished;
3. raw again, so a change in machine load during the run shows as a raw-vs-raw spread.

Steady throughput counts the rows after the first shard over the time since it finished
(Ray, Triton and model start-up excluded: they are fixed costs, reported separately as
end-to-end). Like the other load tests this drives the product through its CLI and the
repository's files only; it imports no `serving` internals.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHUNK_PARAMETER = re.compile(r'key:\s*"LENGTH_CHUNK_TOKENS"\s*value:\s*\{\s*string_value:\s*"([^"]*)"')
SETTLE_S = 10.0  # after `ray start --head` returns (its raylet is up), before the timed job


def served_options(module, model_dir: Path) -> dict:  # noqa: ANN001 - model.py loaded as a module
    """Classifier options that the model's config.pbtxt gives its Triton replicas, so that the raw model
    runs as served: LENGTH_CHUNK_TOKENS (length-sorted passes) where this model.py knows it."""
    if not hasattr(module, "length_chunk_tokens"):
        return {}
    found = CHUNK_PARAMETER.search((model_dir / "config.pbtxt").read_text())
    return {"chunk_tokens": module.length_chunk_tokens(found.group(1) if found else "auto")}


def raw_throughput(version_dir: Path, texts: list[str], batch: int, threads: int) -> float:
    """Rows/s of the version's Classifier, in-process, after one warm-up batch."""
    import torch

    torch.set_num_threads(threads)
    spec = importlib.util.spec_from_file_location("bench_model", version_dir.parent / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    clf = module.Classifier(version_dir, **served_options(module, version_dir.parent))
    clf.predict(texts[:batch])
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        clf.predict(texts[i: i + batch])
    return len(texts) / (time.perf_counter() - t0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, default=ROOT / "model_repository")
    p.add_argument("--model", default="sentiment")
    p.add_argument("--version", default="1")
    p.add_argument("--rows", type=int, default=2000, help="corpus rows to use (0 = all)")
    p.add_argument("--batch", type=int, default=64, help="texts per forward pass, both sides")
    p.add_argument("--shard-rows", type=int, default=256, help="a multiple of --batch: identical batches both sides")
    p.add_argument("--torch-threads", type=int, default=2, help="torch threads, both sides")
    p.add_argument("--backend", choices=["triton", "torch", "serving"], default="triton",
                   help="serving: the stack is deployed on the running cluster first (implies --ray-cluster) and the "
                        "job uses its replica's Triton")
    p.add_argument("--actors", type=int, default=1, help="the job's actors (each with its own backend process)")
    p.add_argument("--job-torch-threads", type=int, default=None,
                   help="torch threads per actor's model process (default: --torch-threads); raw keeps --torch-threads")
    p.add_argument("--executor", choices=["auto", "ray", "local"], default="auto",
                   help="the job's --executor (auto: local for --backend serving on this node, else Ray Data)")
    p.add_argument("--max-call-ms", type=float, default=None,
                   help="the job's --max-call-ms (default: the job's own, 100 ms with --backend serving)")
    p.add_argument("--inflight", type=int, default=None,
                   help="the job's --inflight (default: the job's own, 1 with --backend serving)")
    p.add_argument("--budget-when-idle", action="store_true",
                   help="the job keeps its call budget on an idle replica (distilserve batch run --budget-when-idle)")
    p.add_argument("--live-pause-ms", type=float, default=None,
                   help="with --backend serving: a live client beside the job, one text to /v1/predict at a time with "
                        "this pause between answers; its latencies are reported (live_p50_ms, live_p99_ms, ...)")
    p.add_argument("--workdir", type=Path, default=None, help="keep input/output here (default: a temp dir)")
    p.add_argument("--skip-raw", action="store_true", help="only the batch job (e.g. the full-corpus run)")
    p.add_argument("--ray-cluster", action="store_true",
                   help="start a local Ray head (127.0.0.1) before timing and run the job against it, as a "
                        "scheduled job on a running cluster does; by default the job starts its own Ray")
    p.add_argument("--out", type=Path, default=None, help="also write the result as JSON here")
    args = p.parse_args()

    from distill.data import load_frame

    frame = load_frame()[["text"]]
    if args.rows:
        frame = frame.head(args.rows)
    texts = frame["text"].tolist()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench-batch-"))
    work.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(work / "input.parquet", index=False)
    version_dir = args.repo / args.model / args.version

    raw1 = None if args.skip_raw else raw_throughput(version_dir, texts, args.batch, args.torch_threads)
    out = work / "output"
    ray_tmp = tempfile.mkdtemp(prefix="bb", dir="/tmp")
    cluster = start_cluster(ray_tmp) if args.ray_cluster or args.backend == "serving" else None
    cmd = [str(Path(sys.executable).with_name("distilserve")), "batch", "run",
           "--model", f"{args.model}:{args.version}", "--input", str(work / "input.parquet"), "--output", str(out),
           "--model-repository", str(args.repo), "--backend", args.backend, "--shard-rows", str(args.shard_rows),
           "--infer-batch", str(args.batch), "--torch-threads", str(args.job_torch_threads or args.torch_threads),
           "--actors", str(args.actors), "--executor", args.executor, "--overwrite",
           "--no-progress", *(["--max-call-ms", str(args.max_call_ms)] if args.max_call_ms is not None else []),
           *(["--inflight", str(args.inflight)] if args.inflight is not None else []),
           *(["--budget-when-idle"] if args.budget_when_idle else []),
           *(["--ray-address", cluster[1]] if cluster else ["--ray-temp-dir", ray_tmp])]
    try:
        live = None
        if args.backend == "serving":  # untimed: the stack is already serving when a scheduled job starts
            assert cluster is not None
            port = deploy_stack(cluster[1], args.repo, Path(ray_tmp), args.model, args.version)
            if args.live_pause_ms is not None:  # live traffic on the same replica while the job runs
                from loadtests.live_client import LiveClient

                live = LiveClient(f"http://127.0.0.1:{port}/v1/predict", args.model, texts[:500],
                                  pause_s=args.live_pause_ms / 1000)
        t0 = time.time()
        if live is not None:
            live.start()
        try:
            subprocess.run(cmd, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        finally:
            live_samples = live.stop() if live is not None else None
        wall = time.time() - t0
    finally:
        if cluster:
            from tests.ray_nodes import stop

            stop([cluster[0]], set())
        shutil.rmtree(ray_tmp, ignore_errors=True)
    raw2 = None if args.skip_raw else raw_throughput(version_dir, texts, args.batch, args.torch_threads)

    manifest = json.loads((out / "_manifest.json").read_text())
    run = manifest["runs"][-1]
    steady = run["rows_after_first_shard"] / (run["finished"] - run["first_shard"])
    result = {
        "model": f"{args.model}:{args.version}", "backend": args.backend, "rows": len(texts),
        "ray": "running cluster" if cluster else "started by the job", "executor": run.get("executor"),
        "max_call_ms": run.get("max_call_ms"), "inflight": run.get("inflight"),
        "budget_when_idle": run.get("budget_when_idle"),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "rows_written": sum(manifest["done"].values()), "torch_threads": args.torch_threads, "batch": args.batch,
        "actors": args.actors, "job_torch_threads": args.job_torch_threads or args.torch_threads,
        "batch_steady_rows_s": round(steady, 1), "batch_end_to_end_rows_s": round(len(texts) / wall, 1),
        "batch_wall_s": round(wall, 1), "startup_s": round(run["first_shard"] - run["started"], 1),
    }
    if live_samples is not None:
        from loadtests.live_client import live_summary

        result.update(live_pause_ms=args.live_pause_ms, **live_summary(live_samples))
    if raw1 is not None and raw2 is not None:
        raw = (raw1 + raw2) / 2
        result.update(raw_rows_s=[round(raw1, 1), round(raw2, 1)], ratio_steady=round(steady / raw, 3),
                      ratio_end_to_end=round(len(texts) / wall / raw, 3))
    print(json.dumps(result), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0


def deploy_stack(address: str, repo: Path, work: Path, model: str, version: str) -> int:
    """`distilserve deploy` onto the cluster, then wait (untimed) until the version answers through the
    ingress and its replica has published its Triton; returns the ingress's port."""
    import httpx

    from tests.helpers import free_port, wait_for

    port = free_port()
    # One replica, fixed: the job's load would otherwise make the autoscaler start a second replica
    # mid-job, whose Triton start takes the CPU the job is measured on.
    config = work / "serve.yaml"
    config.write_text("autoscaling:\n  min_replicas: 1\n  max_replicas: 1\n")
    subprocess.run([str(Path(sys.executable).with_name("distilserve")), "deploy", "--ray-address", address,
                    "--config", str(config), "--model-repository", str(repo), "--registry", str(work / "registry.db"),
                    "--port", str(port)],
                   check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    url = f"http://127.0.0.1:{port}/v2/models/{model}/versions/{version}/ready"

    def ready() -> bool:
        try:
            return httpx.get(url, timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(ready, 300, f"{model} v{version} ready", 1.0)
    time.sleep(SETTLE_S)  # its replica publishes the Triton on its next health check; the start-up CPU settles
    return port


def start_cluster(temp_dir: str) -> tuple[subprocess.Popen, str]:
    """A loopback Ray head with this machine's CPUs (tests/ray_nodes.py); (process, address)."""
    sys.path.insert(0, str(ROOT))
    from tests.ray_nodes import LOOPBACK_ENV, distinct_free_ports, start_head

    os.environ.update(LOOPBACK_ENV)  # inherited by the head and by the job's driver
    (port,) = distinct_free_ports(1)
    head = start_head(temp_dir, port, os.cpu_count() or 1, {})
    time.sleep(SETTLE_S)  # the head's own start-up CPU must not land in the job's time
    return head, f"127.0.0.1:{port}"


if __name__ == "__main__":
    sys.exit(main())
