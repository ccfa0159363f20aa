"""Load-shedding benchmark: the stack at 4x its peak load. Run it on an IDLE machine.

    python -m loadtests.bench_shed --version 1 --slo-ms 500

One stack (one replica, `shedding.enabled=true` with --slo-ms, plus any --set key=value
ServeConfig settings), driven over HTTP /v1/predict with single texts from the corpus:
1. unloaded: one closed-loop client -> the unloaded p99;
2. peak: closed-loop sweep over --concurrency; the peak is the highest goodput (200s per second);
3. overload: open loop (a fixed arrival rate, no waiting for answers) at --factor x the peak.
Reported: goodput at overload / peak goodput (goal >= 0.9), p99 of admitted requests / unloaded
p99 (goal <= 3), how many were refused (429) and how fast, and anything else (errors, timeouts:
the goal is none). Writes benchmarks/results/shed-<UTC time>.json (summary, points, load average)
and .csv (one row per overload request).

The client is one Python process: at high rates check `client_lag_ms` in the result (how late
requests left against their schedule); a lagging client under-drives the stack.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import math
import os
import random
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from distilserve.core.stats import percentile
from loadtests import corpus
from loadtests.bench_overhead import (
    apply_settings,
    closed_loop,
    start_ray_retrying,
    stop_serve_and_ray,
    wait_ready,
)
from serving.cpu_affinity import parse_cpu_list
from serving.ray_env import loopback_ray_env

GOODPUT_GOAL, P99_GOAL = 0.9, 3.0  # issue 16, item 4


@dataclass(frozen=True)
class Sample:
    """One overload request: when it was due and when it left (s from the start), latency, HTTP status
    (0 = no answer: a client-side timeout or a broken connection)."""

    due_s: float
    sent_s: float
    latency_ms: float
    status: int


def summarise(unloaded_p99_ms: float, peak_rps: float, samples: list[Sample], duration_s: float) -> dict:
    """The overload run against the goals; pure, so it is unit-tested."""
    ok = [s.latency_ms for s in samples if s.status == 200]
    shed = [s.latency_ms for s in samples if s.status in (429, 503)]
    other = [s for s in samples if s.status not in (200, 429, 503)]
    goodput = len(ok) / duration_s if duration_s > 0 else 0.0
    p99 = percentile(ok, 99)
    goodput_ratio = goodput / peak_rps if peak_rps > 0 else math.nan
    p99_ratio = p99 / unloaded_p99_ms if unloaded_p99_ms > 0 else math.nan
    return {
        "sent": len(samples), "admitted": len(ok), "shed": len(shed), "other": len(other),
        "other_statuses": sorted({s.status for s in other}),
        "offered_rps": round(len(samples) / duration_s, 1) if duration_s > 0 else None,
        "goodput_rps": round(goodput, 1), "peak_rps": round(peak_rps, 1),
        "goodput_ratio": _r(goodput_ratio), "goodput_ok": goodput_ratio >= GOODPUT_GOAL,
        "admitted_p99_ms": _r(p99), "unloaded_p99_ms": _r(unloaded_p99_ms),
        "p99_ratio": _r(p99_ratio), "p99_ok": p99_ratio <= P99_GOAL,
        "shed_p99_ms": _r(percentile(shed, 99)),
        "client_lag_p99_ms": _r(percentile([(s.sent_s - s.due_s) * 1000 for s in samples], 99)),
        "no_timeouts": not other,
    }


def setting_of(result: dict) -> str:
    """How a result file's stack was run: its ServeConfig settings (bar the shedding switch) and the pinning."""
    settings = ", ".join(f"{k}={v}" for k, v in sorted(result.get("settings", {}).items()) if k != "shedding.enabled")
    server = result.get("server_cpus", "all")
    pinning = "shared CPUs" if server == "all" else f"stack on CPU {server}, client on CPU {result.get('client_cpus')}"
    return f"{settings}; {pinning}"


def summary_table(results: list[dict]) -> str:
    """Median (range) per setting over result files, as a markdown table (the figures BENCHMARKS.md quotes)."""
    from loadtests.bench_repeat import spread

    groups: dict[str, list[dict]] = {}
    for r in results:
        groups.setdefault(setting_of(r), []).append(r)

    def mr(rows: list[dict], key: str, nd: int = 2) -> str:
        got = spread([r[key] for r in rows if r.get(key) is not None])
        if not got["n"]:
            return "-"
        return f"{got['median']:.{nd}f} ({got['min']:.{nd}f}-{got['max']:.{nd}f})"

    lines = ["| setting | runs | peak req/s | goodput at 4x / peak | admitted p99 / unloaded p99 | refusal p99 ms "
             "| other (5xx, timeouts) | client lag p99 ms |", "|---|---|---|---|---|---|---|---|"]
    for name, rows in groups.items():
        lines.append(f"| {name} | {len(rows)} | {mr(rows, 'peak_rps', 1)} | {mr(rows, 'goodput_ratio')} "
                     f"| {mr(rows, 'p99_ratio', 1)} | {mr(rows, 'shed_p99_ms', 1)} | {sum(r['other'] for r in rows)} "
                     f"| {mr(rows, 'client_lag_p99_ms', 1)} |")
    return "\n".join(lines)


def cpu_list(spec: str | None) -> set[int] | None:
    """'0', '0,1' or '0-3' -> a CPU set; None stays None (no pinning)."""
    if spec is None:
        return None
    try:
        return set(parse_cpu_list(spec))
    except ValueError as e:
        raise SystemExit(f"--server-cpus/--client-cpus: {e}") from None


def _r(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


async def open_loop(url: str, model: str, texts: list[str], rps: float, duration_s: float,
                    timeout_s: float) -> list[Sample]:
    """Requests due every 1/rps s for duration_s, each sent without waiting for earlier answers."""
    import aiohttp

    rng, samples, tasks = random.Random(1), [], []
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        t0 = time.perf_counter()

        async def one(due: float, text: str) -> None:
            sent = time.perf_counter() - t0
            try:
                async with session.post(url, json={"model": model, "inputs": [text]}) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError):
                status = 0
            samples.append(Sample(due, sent, (time.perf_counter() - t0 - sent) * 1000, status))

        for i in range(int(rps * duration_s)):
            due = i / rps
            await asyncio.sleep(max(0.0, due - (time.perf_counter() - t0)))
            tasks.append(asyncio.create_task(one(due, rng.choice(texts))))
        await asyncio.gather(*tasks)
    return samples


async def _closed(url: str, model: str, texts: list[str], c: int, duration_s: float, warmup_s: float):  # noqa: ANN202
    import aiohttp

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=c)) as session:

        async def call(text: str) -> None:
            async with session.post(url, json={"model": model, "inputs": [text]}) as r:
                if r.status != 200:  # a refusal is not goodput
                    raise RuntimeError(f"HTTP {r.status}")
                await r.read()

        return await closed_loop(call, texts, c, duration_s, warmup_s, "stack")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--model", default="sentiment")
    ap.add_argument("--version", default="1")
    ap.add_argument("--slo-ms", type=float, default=500.0, help="shedding.slo_ms of the stack")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="more ServeConfig settings, dotted: --set batching.max_tokens_per_call=512")
    ap.add_argument("--concurrency", default="1,2,4,8,16,32", help="closed-loop levels searched for the peak")
    ap.add_argument("--factor", type=float, default=4.0, help="overload = factor x peak goodput")
    ap.add_argument("--duration", type=float, default=10.0, help="measured seconds per phase")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--timeout", type=float, default=30.0, help="client timeout per overload request")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--server-cpus", default=None, metavar="LIST",
                    help="CPUs the stack (Ray, its replicas, Triton) may use, e.g. 1; with --client-cpus the client "
                         "runs outside the stack's CPU budget, as a client on another machine would")
    ap.add_argument("--client-cpus", default=None, metavar="LIST", help="CPUs the load client may use, e.g. 0; "
                    "with --set ingress_cpus=0 the ingress moves there too, off the model's CPUs")
    ap.add_argument("--summarize", type=Path, default=None, metavar="DIR",
                    help="print the median/range table of the shed-*.json results in DIR and exit")
    args = ap.parse_args(argv)
    if args.summarize:
        print(summary_table([json.loads(f.read_text()) for f in sorted(args.summarize.glob("shed-*.json"))]))
        return 0
    server_cpus, client_cpus = cpu_list(args.server_cpus), cpu_list(args.client_cpus)
    loopback_ray_env()
    from serving.config import AutoscalingSettings, ServeConfig
    from serving.runner import Runner
    from serving.triton.server import free_port

    settings = {"shedding.enabled": "true", "shedding.slo_ms": str(args.slo_ms),
                **dict(kv.split("=", 1) for kv in args.set)}
    texts = corpus.load_texts()
    tmp = Path(tempfile.mkdtemp(prefix="bs", dir="/tmp"))
    cfg = ServeConfig(port=free_port(), model_repository=args.repository.resolve(), registry=tmp / "registry.db",
                      models=[args.model], autoscaling=AutoscalingSettings(min_replicas=1, max_replicas=1))
    cfg = ServeConfig.model_validate(apply_settings(cfg.model_dump(), settings))
    try:
        if server_cpus:  # inherited by the raylet, every worker and every tritonserver started below
            os.sched_setaffinity(0, server_cpus)
        start_ray_retrying(cfg, str(tmp / "ray"))
        runner = Runner(cfg)
        runner.prepare()
        if args.version not in runner.registry.get_traffic(args.model):
            runner.registry.set_traffic(args.model, {args.version: 100.0}, reason="bench_shed", actor="bench")
        runner.start()
        base = f"http://127.0.0.1:{cfg.port}"
        wait_ready(base, 300)
        if client_cpus:  # this process is only the client from here on
            os.sched_setaffinity(0, client_cpus)
        url = f"{base}/v1/predict"
        unloaded = asyncio.run(_closed(url, args.model, texts, 1, args.duration, args.warmup))
        points = [asyncio.run(_closed(url, args.model, texts, int(c), args.duration, args.warmup))
                  for c in args.concurrency.split(",")]
        for p in [unloaded, *points]:
            print(f"c={p.concurrency:<3} {p.rps:8.1f} req/s  p99 {p.p99_ms:7.1f} ms  refused/errors {p.errors}", flush=True)
        peak = max(points, key=lambda p: p.rps)
        samples = asyncio.run(open_loop(url, args.model, texts, args.factor * peak.rps, args.duration, args.timeout))
    finally:
        stop_serve_and_ray()
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"command": " ".join([sys.executable, "-m", "loadtests.bench_shed", *(argv or sys.argv[1:])]),
              "settings": settings, "factor": args.factor,
              "server_cpus": sorted(server_cpus) if server_cpus else "all",
              "client_cpus": sorted(client_cpus) if client_cpus else "all", "load_average_1m": os.getloadavg()[0],
              "unloaded": asdict(unloaded), "points": [asdict(p) for p in points],
              **summarise(unloaded.p99_ms, peak.rps, samples, args.duration)}
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"shed-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    with open(stem.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(Sample.__dataclass_fields__))
        w.writeheader()
        w.writerows(asdict(s) for s in samples)
    print(json.dumps({k: v for k, v in result.items() if k not in ("points", "unloaded")}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
