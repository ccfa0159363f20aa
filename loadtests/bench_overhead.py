"""Serving-overhead benchmark: one model version, four ways, one run, one machine.

    python -m loadtests.bench_overhead --version 1 --out runs/bench/overhead

Targets, each swept over closed-loop concurrency levels with single-text requests drawn from
the corpus (per-request overhead is what differs between them):
- `raw`          the model in this process, `Classifier.predict` on batches of B texts (the
                 ceiling: perfect batching, no transport); "concurrency" is the batch size;
- `triton`       Triton direct: a tritonserver on this version, tritonclient gRPC (asyncio);
- `triton-http`  the same Triton over HTTP, the Open Inference Protocol's JSON body (aiohttp);
- `stack`        the full stack as `distilserve serve` runs it (HTTP /v1/predict to the Ingress replica's own
                 listener, paced micro-batches, gRPC straight to the replica's Triton; Serve's handle as fallback);
- `stack-grpc`   the same stack driven by the very client of `triton` (tritonclient gRPC, the stack's OIP
                 gRPC port): only the server differs;
- `stack-oip`    the same stack driven by the very client of `triton-http` (OIP JSON over HTTP);
- `serve-torch`  the same Ray Serve stack with the in-process torch backend instead of Triton.
A stack target may carry environment variables (names starting with an upper-case letter: Ray Serve
flags, Ray core settings; set in the environment of its own Ray) and ServeConfig settings (dotted
lower case): `stack@RAY_SERVE_THROUGHPUT_OPTIMIZED=1+batching.enabled=false` (`split_flags`).

The result per target is the best throughput whose p99 <= --slo-ms, and ratios between targets:
each target against Triton direct, and `stack-oip` also against `triton-http` (`baseline_of`: the
same client and protocol on both sides, so the ratio is the server's alone).
The benchmark uses serving's launchers only to start the system under test; it drives it over
HTTP and gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import importlib.util
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from distilserve.core.stats import percentile
from distilserve.core.tensors import INPUT_TEXT, OUTPUT_LABEL
from loadtests import corpus
from serving.ray_env import loopback_ray_env


@dataclass
class Point:
    target: str
    concurrency: int
    requests: int
    errors: int
    rps: float  # texts per second (requests are single texts, except raw batches)
    p50_ms: float
    p99_ms: float


TARGETS = ("raw", "triton", "triton-http", "stack", "stack-grpc", "stack-oip", "serve-torch")
SAME_CLIENT_BASELINE = {"stack-grpc": "triton", "stack-oip": "triton-http"}


def baseline_of(target: str) -> str | None:
    """The Triton-direct target driven by the same client and protocol as `target` (None: no such pair)."""
    return SAME_CLIENT_BASELINE.get(target.split("@")[0])


def best_under_slo(points: list[Point], slo_ms: float) -> Point | None:
    """The highest-throughput point whose p99 meets the SLO and that had no errors."""
    ok = [p for p in points if p.p99_ms <= slo_ms and p.errors == 0 and p.requests > 0]
    return max(ok, key=lambda p: p.rps, default=None)


async def closed_loop(call, texts: list[str], concurrency: int, duration_s: float, warmup_s: float,
                      target: str) -> Point:
    """`concurrency` workers each send one request at a time; only requests started after warm-up count."""
    rng = random.Random(concurrency)
    latencies: list[float] = []
    errors = 0
    t_start = time.perf_counter()
    measure_from, stop_at = t_start + warmup_s, t_start + warmup_s + duration_s

    async def worker() -> None:
        nonlocal errors
        while (t0 := time.perf_counter()) < stop_at:
            try:
                await call(rng.choice(texts))
                ok = True
            except Exception:  # noqa: BLE001 - counted, the sweep goes on
                ok = False
            if t0 >= measure_from:
                if ok:
                    latencies.append((time.perf_counter() - t0) * 1000)
                else:
                    errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - measure_from
    return Point(target, concurrency, len(latencies), errors, len(latencies) / elapsed,
                 percentile(latencies, 50), percentile(latencies, 99))


# ---- targets ---------------------------------------------------------------------------------
def bench_raw(repo: Path, model: str, version: str, texts: list[str], sizes: list[int], duration_s: float,
              threads: int) -> list[Point]:
    import torch

    torch.set_num_threads(threads)
    spec = importlib.util.spec_from_file_location("bench_model", repo / model / "model.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    from loadtests.bench_batch import served_options

    clf = module.Classifier(repo / model / version, **served_options(module, repo / model))
    rng = random.Random(0)
    points = []
    for size in sizes:
        clf.predict(rng.choices(texts, k=size))  # warm-up
        latencies, done, t0 = [], 0, time.perf_counter()
        while time.perf_counter() - t0 < duration_s:
            s = time.perf_counter()
            clf.predict(rng.choices(texts, k=size))
            latencies.append((time.perf_counter() - s) * 1000)
            done += size
        points.append(Point("raw", size, len(latencies), 0, done / (time.perf_counter() - t0),
                            percentile(latencies, 50), percentile(latencies, 99)))
        print(_fmt(points[-1]), flush=True)
    return points


def bench_triton(repo: Path, model: str, version: str, texts: list[str], levels: list[int], duration_s: float,
                 warmup_s: float, protocol: str = "grpc") -> list[Point]:
    """Triton direct on this version, over gRPC (`triton`) or OIP JSON over HTTP (`triton-http`)."""
    from serving.triton.repo_view import make_view
    from serving.triton.server import TritonServer

    view = Path(tempfile.mkdtemp(prefix="bench-triton-"))
    make_view(repo, model, version, view)
    server = TritonServer(view, log_dir=view)
    try:
        server.start(timeout=300)
        server.load(model, timeout=300)
        if protocol == "grpc":
            return asyncio.run(_grpc_sweep("triton", server.grpc_url, model, version, texts, levels, duration_s,
                                           warmup_s))
        url = f"http://{server.http_url}/v2/models/{model}/versions/{version}/infer"
        return asyncio.run(_http_sweep("triton-http", url, oip_json_body, texts, levels, duration_s, warmup_s))
    finally:
        server.stop()
        shutil.rmtree(view, ignore_errors=True)


@contextlib.contextmanager
def running_stack(backend: str, extra: dict[str, str], repo: Path, model: str, version: str) -> Iterator:
    """Ray + the stack, one replica of `version`, with the target's extras (`split_flags`: variables set
    in this process's environment before Ray starts, settings applied to the ServeConfig); yields the
    ServeConfig once the ingress is ready, stops Serve and Ray after. Serve reads its flags at import,
    so each stack needs a fresh process."""
    settings, env = split_flags(extra)
    os.environ.update(env)
    from serving.config import AutoscalingSettings, ServeConfig
    from serving.runner import Runner
    from serving.triton.server import free_port

    tmp = Path(tempfile.mkdtemp(prefix="bo", dir="/tmp"))
    # One replica, fixed: this measures the serving path, not the autoscaler.
    cfg = ServeConfig(port=free_port(), grpc_port=free_port(), model_repository=repo, registry=tmp / "registry.db",
                      models=[model], backend=backend, autoscaling=AutoscalingSettings(min_replicas=1, max_replicas=1))
    cfg = ServeConfig.model_validate(apply_settings(cfg.model_dump(), settings))
    try:
        start_ray_retrying(cfg, str(tmp / "ray"))
        runner = Runner(cfg)
        runner.prepare()
        if version not in runner.registry.get_traffic(model):
            runner.registry.set_traffic(model, {version: 100.0}, reason="bench_overhead", actor="bench")
        runner.start()
        wait_ready(f"http://127.0.0.1:{cfg.port}", 300)
        yield cfg
    finally:
        stop_serve_and_ray()
        for k in env:
            os.environ.pop(k, None)
        shutil.rmtree(tmp, ignore_errors=True)


def bench_stack(name: str, backend: str, env: dict[str, str], repo: Path, model: str, version: str,
                texts: list[str], levels: list[int], duration_s: float, warmup_s: float) -> list[Point]:
    """Sweep a stack (`running_stack`) with the client of its kind: /v1/predict, OIP gRPC or OIP JSON."""
    with running_stack(backend, env, repo, model, version) as cfg:
        url = f"http://127.0.0.1:{cfg.port}"
        kind = name.split("@")[0]
        if kind == "stack-grpc":
            return asyncio.run(_grpc_sweep(name, f"127.0.0.1:{cfg.grpc_port}", model, version, texts, levels,
                                           duration_s, warmup_s))
        if kind == "stack-oip":
            return asyncio.run(_http_sweep(name, f"{url}/v2/models/{model}/versions/{version}/infer", oip_json_body,
                                           texts, levels, duration_s, warmup_s))
        return asyncio.run(_http_sweep(name, f"{url}/v1/predict", lambda text: {"model": model, "inputs": [text]},
                                       texts, levels, duration_s, warmup_s))


def apply_settings(data: dict, settings: dict[str, str]) -> dict:
    """{'batching.max_wait_ms': '2'} applied to a ServeConfig dump (pydantic converts the strings)."""
    for key, value in settings.items():
        node = data
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return data


def start_ray_retrying(cfg, temp_dir: str, attempts: int = 3) -> None:  # noqa: ANN001 - a ServeConfig
    """`serving.stack.start_ray`, retried: on a loaded 2-core machine the raylet sometimes misses
    Ray's registration deadline ("The current node timed out during startup")."""
    import ray

    from serving.stack import start_ray

    os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
    for attempt in range(attempts):
        try:
            start_ray(cfg, temp_dir=temp_dir)
            return
        except Exception:
            ray.shutdown()
            if attempt + 1 == attempts:
                raise
            time.sleep(5)


def stop_serve_and_ray() -> None:
    """serve.shutdown() only if Ray is up: it would otherwise start a fresh Ray just to stop it."""
    import ray
    from ray import serve

    if ray.is_initialized():
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


def wait_ready(url: str, timeout_s: float) -> None:
    """Poll the ingress's readiness endpoint (a stack starting Tritons takes a while)."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v2/health/ready", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} not ready after {timeout_s:.0f}s")


def oip_json_body(text: str) -> dict:
    """One text as an Open Inference Protocol JSON request (Triton's and the stack's /v2/.../infer)."""
    return {"inputs": [{"name": INPUT_TEXT, "shape": [1, 1], "datatype": "BYTES", "data": [text]}]}


async def _http_sweep(name: str, url: str, payload: Callable[[str], dict], texts: list[str], levels: list[int],
                      duration_s: float, warmup_s: float) -> list[Point]:
    import aiohttp

    out = []
    for c in levels:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as session:

            async def call(text: str, session: aiohttp.ClientSession = session) -> None:
                async with session.post(url, json=payload(text)) as r:
                    if r.status != 200:
                        raise RuntimeError(f"HTTP {r.status}: {(await r.text())[:200]}")
                    await r.read()

            out.append(await closed_loop(call, texts, c, duration_s, warmup_s, name))
        print(_fmt(out[-1]), flush=True)
    return out


async def _grpc_sweep(name: str, grpc_url: str, model: str, version: str, texts: list[str], levels: list[int],
                      duration_s: float, warmup_s: float) -> list[Point]:
    """tritonclient's asyncio gRPC client, one text a request: the same code against Triton and the stack."""
    import numpy as np
    import tritonclient.grpc as grpc
    import tritonclient.grpc.aio as grpc_aio

    client = grpc_aio.InferenceServerClient(grpc_url)

    async def call(text: str) -> None:
        inp = grpc.InferInput(INPUT_TEXT, [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[text.encode()]], dtype=np.object_))
        result = await client.infer(model, [inp], model_version=version)
        result.as_numpy(OUTPUT_LABEL)

    out = []
    try:
        for c in levels:
            out.append(await closed_loop(call, texts, c, duration_s, warmup_s, name))
            print(_fmt(out[-1]), flush=True)
    finally:
        await client.close()
    return out


def _fmt(p: Point) -> str:
    return (f"{p.target:<28} c={p.concurrency:<3} n={p.requests:<6} err={p.errors:<4} "
            f"{p.rps:8.1f} texts/s  p50 {p.p50_ms:7.1f} ms  p99 {p.p99_ms:7.1f} ms")


def split_flags(extra: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """(ServeConfig settings, environment variables) of a target's extras: a variable starts with an
    upper-case letter (RAY_SERVE_..., RAY_enable_metrics_collection), a setting is dotted lower case."""
    return ({k: v for k, v in extra.items() if not k[:1].isupper()},
            {k: v for k, v in extra.items() if k[:1].isupper()})


def parse_target(spec: str) -> tuple[str, dict[str, str]]:
    """'stack@A=1+B=2' -> ('stack', {'A': '1', 'B': '2'})."""
    name, _, flags = spec.partition("@")
    env = dict(kv.split("=", 1) for kv in flags.split("+") if kv) if flags else {}
    if name not in TARGETS:
        raise ValueError(f"target must be one of {', '.join(TARGETS)} (a stack one optionally @FLAG=V+FLAG=V), "
                         f"got {spec!r}")
    if env and not name.startswith(("stack", "serve")):
        raise ValueError(f"only stack targets take settings, got {spec!r}")
    return name, env


def summary(points: list[Point], slo_ms: float) -> dict:
    by_target: dict[str, list[Point]] = {}
    for p in points:
        by_target.setdefault(p.target, []).append(p)
    best = {t: best_under_slo(ps, slo_ms) for t, ps in by_target.items()}
    out = {"slo_ms": slo_ms, "best": {t: asdict(p) if p else None for t, p in best.items()}, "ratios": {}}
    for base in ("triton", "raw"):
        if best.get(base):
            for t, p in best.items():
                if t != base and p:
                    out["ratios"][f"{t} / {base}"] = round(p.rps / best[base].rps, 3)
    for t, p in best.items():  # against the Triton target with the same client, where that is not `triton`
        base = baseline_of(t)
        if p and base not in (None, "triton") and best.get(base):
            out["ratios"][f"{t} / {base}"] = round(p.rps / best[base].rps, 3)
    peak = {t: max(ps, key=lambda p: p.rps) for t, ps in by_target.items()}
    out["peak_rps_any_latency"] = {t: round(p.rps, 1) for t, p in peak.items()}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--model", default="sentiment")
    ap.add_argument("--version", default="1")
    ap.add_argument("--targets", default="raw,triton,stack,serve-torch",
                    help="comma-separated; a stack target may carry Serve flags: 'stack@RAY_SERVE_THROUGHPUT_OPTIMIZED=1'")
    ap.add_argument("--concurrency", default="1,2,4,8,16,32")
    ap.add_argument("--duration", type=float, default=8.0, help="measured seconds per level")
    ap.add_argument("--warmup", type=float, default=2.0, help="seconds per level not measured")
    ap.add_argument("--slo-ms", type=float, default=100.0)
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the raw model (Triton's config says 2)")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/overhead"))
    ap.add_argument("--one-target", type=Path, help=argparse.SUPPRESS)  # internal: child run, points -> file
    args = ap.parse_args(argv)
    loopback_ray_env()  # before anything imports ray (transformers and tritonclient may)
    targets = [parse_target(t) for t in args.targets.split(",")]
    levels = [int(c) for c in args.concurrency.split(",")]
    repo = args.repository.resolve()
    texts = corpus.load_texts()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.one_target:
        (args.out / "command.txt").write_text(" ".join([sys.executable, "-m", "loadtests.bench_overhead", *(argv or sys.argv[1:])]) + "\n")
    if args.one_target:  # a child run: one stack target, in a fresh process with its own Ray
        name, env = targets[0]
        label = name + ("@" + "+".join(f"{k}={v}" for k, v in env.items()) if env else "")
        backend = "torch" if name == "serve-torch" else "triton"
        points = bench_stack(label, backend, env, repo, args.model, args.version, texts, levels, args.duration,
                             args.warmup)
        args.one_target.write_text(json.dumps([asdict(p) for p in points]))
        return 0
    points: list[Point] = []
    for i, (name, _env) in enumerate(targets):
        t0 = time.time()
        if name == "raw":
            points += bench_raw(repo, args.model, args.version, texts, levels, args.duration, args.threads)
        elif name in ("triton", "triton-http"):
            points += bench_triton(repo, args.model, args.version, texts, levels, args.duration, args.warmup,
                                   "grpc" if name == "triton" else "http")
        else:
            # Serve reads its flags at import and a second ray.init in one process is fragile:
            # every stack target runs in a child process of its own.
            part = args.out / f"part-{i}.json"
            child = [sys.executable, "-m", "loadtests.bench_overhead", "--repository", str(repo), "--model",
                     args.model, "--version", args.version, "--targets", args.targets.split(",")[i],
                     "--concurrency", args.concurrency, "--duration", str(args.duration), "--warmup",
                     str(args.warmup), "--out", str(args.out), "--one-target", str(part)]
            subprocess.run(child, check=True, timeout=1800)
            points += [Point(**p) for p in json.loads(part.read_text())]
            part.unlink()
        print(f"-- {args.targets.split(',')[i]} done in {time.time() - t0:.0f}s", flush=True)
    with open(args.out / "overhead.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(points[0])))
        w.writeheader()
        w.writerows(asdict(p) for p in points)
    result = summary(points, args.slo_ms)
    result["load_average_1m_at_end"] = os.getloadavg()[0]
    (args.out / "summary.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
