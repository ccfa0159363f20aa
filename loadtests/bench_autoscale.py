"""Autoscaling benchmark: a step load against the stack, sampled every second, CSV + PNG.

    python -m loadtests.bench_autoscale --version 1 --levels 10,100,1000 --duration 90 \
        --out runs/bench/autoscale

This process starts Ray and the stack (one ModelVersion app, autoscaled per the flags) and,
every second, samples the version's replica states from `serve.status()`. Locust drives the
step shape in its own process and logs every request; per second we then have: target load,
running / starting replicas, achieved throughput, p50 / p99 latency and errors. Reported:
for each load step, the time to the first scale-up decision (a replica STARTING; negative when
it was already starting at the step) and to the first new RUNNING replica; every replica start
with its own decision-to-ready time (`replica_starts`), wherever it falls; and whether the
replica count oscillates. `--summarize RUN_DIR...` derives these again from committed CSVs.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from distilserve.core.stats import percentile
from loadtests.bench_overhead import start_ray_retrying, stop_serve_and_ray, wait_ready


@dataclass
class Second:
    t: int  # seconds since the first locust sample
    target_rps: float
    users: int
    running: int
    starting: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


# ---- pure analysis (unit-tested) ----------------------------------------------------------------
def load_steps(rows: list[Second]) -> list[int]:
    """Seconds at which the target load went up from a running load (the start from zero is no step)."""
    return [b.t for a, b in zip(rows, rows[1:], strict=False) if b.target_rps > a.target_rps > 0]


def scale_up_after(rows: list[Second], step_t: int) -> dict:
    """Seconds from a load step to the first STARTING replica and to a new RUNNING replica (None: never)."""
    before = next((r.running for r in rows if r.t == step_t), None)
    if before is None:
        return {"step_t": step_t, "decision_s": None, "ready_s": None}
    later = [r for r in rows if r.t >= step_t]
    decision = next((r.t - step_t for r in later if r.starting > 0 or r.running > before), None)
    if decision == 0:  # already STARTING at the step: the autoscaler decided before it (negative)
        earlier = [r for r in rows if r.t <= step_t]
        while len(earlier) > 1 and earlier[-2].starting > 0:
            earlier.pop()
        decision = earlier[-1].t - step_t
    ready = next((r.t - step_t for r in later if r.running > before), None)
    # The bound is on this one: the new replica's own start, once the autoscaler decided.
    after = ready - decision if ready is not None and decision is not None else None
    return {"step_t": step_t, "replicas_before": before, "decision_s": decision, "ready_s": ready,
            "decision_to_ready_s": after}


def replica_starts(rows: list[Second]) -> list[dict]:
    """Every replica start, wherever it falls relative to the load steps: the second a replica
    became STARTING (the decision) and the first second after it with more RUNNING replicas.
    On a slow machine the first level alone can trigger one before any step."""
    starts = []
    for i in range(1, len(rows)):
        if rows[i].starting > 0 and rows[i - 1].starting == 0:
            ready = next((r.t for r in rows[i:] if r.running > rows[i - 1].running), None)
            starts.append({"decision_t": rows[i].t, "ready_t": ready,
                           "decision_to_ready_s": None if ready is None else ready - rows[i].t})
    return starts


def read_seconds(path: Path) -> list[Second]:
    """A run's autoscale.csv back as rows (what `main` wrote)."""
    with open(path, newline="") as f:
        return [Second(int(r["t"]), float(r["target_rps"]), int(r["users"]), int(r["running"]), int(r["starting"]),
                       float(r["rps"]), float(r["p50_ms"]), float(r["p99_ms"]), int(r["errors"]))
                for r in csv.DictReader(f)]


def summarize(runs: list[Path]) -> list[dict]:
    """Per run folder: the timings derived again from its autoscale.csv, by the current rules."""
    out = []
    for run in runs:
        rows = read_seconds(run / "autoscale.csv")
        out.append({"run": run.name, "steps": [scale_up_after(rows, s) for s in load_steps(rows)],
                    "replica_starts": replica_starts(rows)})
    return out


def direction_changes(counts: list[int]) -> int:
    """How often a series turns (up then down, or down then up), ignoring flat stretches."""
    moves = [b - a for a, b in zip(counts, counts[1:], strict=False) if b != a]
    return sum(1 for a, b in zip(moves, moves[1:], strict=False) if (a > 0) != (b > 0))


def oscillation(rows: list[Second]) -> dict:
    """Turns of the running-replica count under load against turns of the offered load: a count
    that turns more often than the load it follows oscillates (a load that rises and falls once
    may turn the count once; flapping up and down under a steady load may not)."""
    loaded = [r for r in rows if r.users > 0]
    replica_turns = direction_changes([r.running for r in loaded])
    load_turns = direction_changes([round(r.target_rps) for r in loaded])
    return {"direction_changes_under_load": replica_turns, "load_direction_changes": load_turns,
            "oscillates": replica_turns > load_turns}


def per_second(requests: list[tuple[float, float, bool]], history: list[tuple[float, int]], replicas: dict[int, tuple[int, int]],
               per_user_rps: float) -> list[Second]:
    """Join the request log (end time, latency ms, ok), locust's users per second and replica samples."""
    if not history:
        return []
    t0 = history[0][0]
    users = {int(ts - t0): u for ts, u in history}
    horizon = max(users)
    buckets: dict[int, list[tuple[float, bool]]] = {}
    for end, latency, ok in requests:
        buckets.setdefault(int(end - t0), []).append((latency, ok))
    rows = []
    last_users, last_rep = 0, (0, 0)
    for t in range(horizon + 1):
        last_users = users.get(t, last_users)
        last_rep = replicas.get(t, last_rep)
        got = buckets.get(t, [])
        lat = [latency for latency, ok in got if ok]
        rows.append(Second(t, last_users * per_user_rps, last_users, last_rep[0], last_rep[1], float(len(lat)),
                           percentile(lat, 50), percentile(lat, 99), sum(1 for _, ok in got if not ok)))
    return rows


# ---- I/O -------------------------------------------------------------------------------------------
def read_requests(path: Path) -> list[tuple[float, float, bool]]:
    with open(path) as f:
        return [(float(r["end_unix_s"]), float(r["latency_ms"]), r["ok"] == "1") for r in csv.DictReader(f)
                if not r["name"].startswith("malformed")]


def read_history(path: Path) -> list[tuple[float, int]]:
    """(unix time, user count) per second from locust's stats history (Aggregated rows)."""
    with open(path) as f:
        return [(float(r["Timestamp"]), int(r["User Count"])) for r in csv.DictReader(f) if r["Name"] == "Aggregated"]


def plot(rows: list[Second], steps: list[int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [r.t for r in rows]
    fig, ax = plt.subplots(3, 1, figsize=(10, 9), sharex=True)
    ax[0].plot(t, [r.target_rps for r in rows], "--", label="offered (target) req/s")
    ax[0].plot(t, [r.rps for r in rows], label="achieved req/s")
    ax[0].plot(t, [r.errors for r in rows], label="errors/s")
    ax[0].set_yscale("symlog", linthresh=10)
    ax[0].legend(loc="upper left")
    ax[1].step(t, [r.running for r in rows], where="post", label="running replicas")
    ax[1].step(t, [r.running + r.starting for r in rows], where="post", linestyle=":", label="running + starting")
    ax[1].set_ylim(0, max(r.running + r.starting for r in rows) + 1)
    ax[1].legend(loc="upper left")
    ax[2].plot(t, [r.p50_ms for r in rows], label="p50 ms")
    ax[2].plot(t, [r.p99_ms for r in rows], label="p99 ms")
    ax[2].set_yscale("log")
    ax[2].axhline(100, color="grey", linewidth=0.5)
    ax[2].legend(loc="upper left")
    ax[2].set_xlabel("seconds since load start")
    for a in ax:
        for s in steps:
            a.axvline(s, color="red", linewidth=0.6, alpha=0.6)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--model", default="sentiment")
    ap.add_argument("--version", default="1")
    ap.add_argument("--backend", default="triton", choices=["triton", "torch"])
    ap.add_argument("--levels", default="10,100,1000", help="req/s of the step shape")
    ap.add_argument("--duration", type=float, default=90.0, help="seconds of load (split equally between levels)")
    ap.add_argument("--tail", type=float, default=10.0, help="seconds sampled after the load stops")
    ap.add_argument("--per-user-rps", type=float, default=10.0)
    ap.add_argument("--max-batch", type=int, default=64)
    ap.add_argument("--autoscaling", default="{}", help="AutoscalingSettings overrides as JSON")
    ap.add_argument("--replica-cpus", type=float, default=0.5)
    ap.add_argument("--out", type=Path, default=Path("runs/bench/autoscale"))
    ap.add_argument("--summarize", type=Path, nargs="+", metavar="RUN_DIR",
                    help="print the timings of finished runs again from their autoscale.csv; run nothing")
    args = ap.parse_args(argv)
    if args.summarize:
        print(json.dumps(summarize(args.summarize), indent=2))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "command.txt").write_text(" ".join([sys.executable, "-m", "loadtests.bench_autoscale",
                                                    *(argv or sys.argv[1:])]) + "\n")
    from serving.ray_env import loopback_ray_env

    loopback_ray_env()  # before anything imports ray: Ray reads these settings at import
    from ray import serve

    from distilserve.core.names import app_name
    from serving.config import AutoscalingSettings, ServeConfig
    from serving.runner import Runner
    from serving.triton.server import free_port

    autoscaling = AutoscalingSettings(**json.loads(args.autoscaling))
    tmp = Path(tempfile.mkdtemp(prefix="ba", dir="/tmp"))
    cfg = ServeConfig(port=free_port(), model_repository=args.repository.resolve(), registry=tmp / "registry.db",
                      models=[args.model], backend=args.backend, autoscaling=autoscaling,
                      replica_cpus=args.replica_cpus)
    levels = [float(x) for x in args.levels.split(",")]
    locust: subprocess.Popen | None = None
    samples: list[tuple[float, int, int]] = []
    try:
        start_ray_retrying(cfg, str(tmp / "ray"))
        runner = Runner(cfg)
        runner.prepare()
        runner.registry.set_traffic(args.model, {args.version: 100.0}, reason="bench_autoscale", actor="bench")
        runner.start()
        url = f"http://127.0.0.1:{cfg.port}"
        wait_ready(url, 300)
        app = app_name(args.model, args.version)
        cmd = [sys.executable, "-m", "loadtests.run_locust", "--host", url, "--shape", "step",
               "--duration", str(args.duration), "--params", json.dumps({"levels": levels}),
               "--per-user-rps", str(args.per_user_rps), "--max-batch", str(args.max_batch),
               "--request-log", "--out", str(args.out / "locust")]
        locust = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        stop_at = time.monotonic() + args.duration + args.tail + 120  # hard bound whatever locust does
        tail_until = None
        while time.monotonic() < stop_at:
            states = serve.status().applications[app].deployments["ModelVersion"].replica_states
            samples.append((time.time(), int(states.get("RUNNING", 0)), int(states.get("STARTING", 0))))
            if locust.poll() is not None:
                tail_until = tail_until or time.monotonic() + args.tail
                if time.monotonic() >= tail_until:
                    break
            time.sleep(max(0.0, 1.0 - (time.time() - samples[-1][0])))
    finally:
        if locust is not None and locust.poll() is None:
            locust.kill()
        stop_serve_and_ray()
        shutil.rmtree(tmp, ignore_errors=True)
    history = read_history(args.out / "locust" / "locust_stats_history.csv")
    t0 = history[0][0]
    replicas = {int(ts - t0): (run, start) for ts, run, start in samples if ts >= t0}
    # Keep sampling replicas through the tail: extend the locust history with zero users.
    history += [(ts, 0) for ts, _, _ in samples if ts > history[-1][0] + 1]
    rows = per_second(read_requests(args.out / "locust" / "requests.csv"), history, replicas, args.per_user_rps)
    with open(args.out / "autoscale.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
        w.writeheader()
        w.writerows(asdict(r) for r in rows)
    steps = load_steps(rows)
    result = {
        "autoscaling": autoscaling.model_dump(),
        "levels_rps": levels,
        "steps": [scale_up_after(rows, s) for s in steps],
        "replica_starts": replica_starts(rows),
        "max_running": max(r.running for r in rows),
        **oscillation(rows),
        "errors": sum(r.errors for r in rows),
        "load_average_1m_at_end": os.getloadavg()[0],
    }
    (args.out / "summary.json").write_text(json.dumps(result, indent=2))
    plot(rows, steps, args.out / "autoscale.png",
         f"{args.model} v{args.version}: step {args.levels} req/s, target_ongoing={autoscaling.target_ongoing_requests}")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
