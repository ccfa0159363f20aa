"""The stack's idle tax: CPU its processes take with no request in flight. Run it on an IDLE machine.

    python -m loadtests.bench_idle --targets "stack,stack@RAY_enable_metrics_collection=1" --repeats 3

On a 2-core machine whatever Ray, Serve and distilserve's own control plane burn in the background
comes out of the model's share under load, so it is measured on its own. Each target is a stack
as `bench_overhead` starts it: the ingress and one replica of the version, without distilserve's
controller (which `distilserve serve` adds), with environment variables and ServeConfig settings
after `@`. It is started in a fresh process with its own Ray and left to settle for --settle
seconds; then every process's CPU time (user + system, psutil) is read twice, --seconds apart.
Repeats rotate the order of the targets. Writes --out/idle.json: per run and process kind, the
cores used (CPU seconds per second), and per target the median and range over repeats of the total
and of each kind. Processes of this benchmark itself and kernel threads are not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from loadtests.bench_repeat import spread

MODEL_KINDS = ("tritonserver", "triton_python_backend_stub")


# ---- pure ---------------------------------------------------------------------------------------
def process_kind(cmdline: list[str]) -> str:
    """A short, stable name for a process from its argv: Ray workers by their actor ('ray::IDLE',
    'ray::ServeReplica:ingress:Ingress'; the method running now is dropped), Python scripts by the
    script ('log_monitor.py'), binaries by their file name ('raylet', 'tritonserver')."""
    if not cmdline:
        return "?"
    head = cmdline[0]
    if head.startswith("ray::"):
        name = head.split()[0]
        return name.rpartition(".")[0] or name
    base = os.path.basename(head)
    if base.startswith("python") and len(cmdline) > 1:
        rest = [a for a in cmdline[1:] if not a.startswith("-")]
        if "-m" in cmdline[1:]:
            return "python -m " + cmdline[cmdline.index("-m") + 1]
        return os.path.basename(rest[0]) if rest else base
    return base


def cores_by_kind(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
                  seconds: float) -> dict[str, float]:
    """CPU seconds per second of each kind between two snapshots {pid: (kind, cpu_s)}; a process
    that started in between counts from zero."""
    out: dict[str, float] = defaultdict(float)
    for pid, (kind, cpu) in after.items():
        out[kind] += (cpu - before.get(pid, (kind, 0.0))[1]) / seconds
    return {k: round(v, 4) for k, v in sorted(out.items(), key=lambda kv: -kv[1]) if v > 0}


def aggregate(runs: list[dict]) -> dict:
    """runs: {"target", "repeat", "cores": {kind: cores}} -> per target: total, the model's share, the
    rest (Ray, Serve, the ingress, the controller), and each kind, as median and range."""
    by_target: dict[str, list[dict]] = defaultdict(list)
    for r in runs:
        by_target[r["target"]].append(r["cores"])
    out = {}
    for target, cores in by_target.items():
        kinds = sorted({k for c in cores for k in c})
        out[target] = {
            "total": spread([sum(c.values()) for c in cores]),
            "outside_the_model": spread([sum(v for k, v in c.items() if k not in MODEL_KINDS) for c in cores]),
            "kinds": {k: spread([c.get(k, 0.0) for c in cores]) for k in kinds},
        }
    return out


# ---- I/O ----------------------------------------------------------------------------------------
def snapshot(exclude: set[int]) -> dict[int, tuple[str, float]]:
    """{pid: (kind, CPU seconds so far, user + system)} of every process with a command line (not a
    kernel thread) but `exclude`."""
    import psutil

    out = {}
    for proc in psutil.process_iter(["pid", "cmdline", "cpu_times"]):
        pid, argv, times = proc.info["pid"], proc.info["cmdline"], proc.info["cpu_times"]
        if pid not in exclude and argv and times is not None:
            out[pid] = (process_kind(argv), times.user + times.system)
    return out


def measure_one(spec: str, repo: Path, model: str, version: str, settle_s: float, seconds: float) -> dict[str, float]:
    """Start the target's stack in this process, wait, and measure every other process's CPU."""
    from loadtests.bench_overhead import parse_target, running_stack

    name, extra = parse_target(spec)
    with running_stack("torch" if name == "serve-torch" else "triton", extra, repo, model, version):
        time.sleep(settle_s)
        exclude = {os.getpid()}
        before = snapshot(exclude)
        time.sleep(seconds)
        return cores_by_kind(before, snapshot(exclude), seconds)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--model", default="sentiment")
    ap.add_argument("--version", default="1")
    ap.add_argument("--targets", default="stack")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--settle", type=float, default=15.0, help="seconds after the stack is ready, not measured")
    ap.add_argument("--seconds", type=float, default=20.0, help="measured seconds")
    ap.add_argument("--out", type=Path, default=Path("runs/bench/idle"))
    ap.add_argument("--one-target", type=Path, help=argparse.SUPPRESS)  # internal: child run, result -> file
    args = ap.parse_args(argv)
    from serving.ray_env import loopback_ray_env

    loopback_ray_env()  # before anything imports ray
    targets = args.targets.split(",")
    repo = args.repository.resolve()
    if args.one_target:
        cores = measure_one(targets[0], repo, args.model, args.version, args.settle, args.seconds)
        args.one_target.write_text(json.dumps(cores))
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for repeat in range(1, args.repeats + 1):
        shift = (repeat - 1) % len(targets)
        for spec in targets[shift:] + targets[:shift]:
            part = args.out / "part.json"
            load = [round(x, 2) for x in os.getloadavg()]
            started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            child = [sys.executable, "-m", "loadtests.bench_idle", "--repository", str(repo), "--model", args.model,
                     "--version", args.version, "--targets", spec, "--settle", str(args.settle), "--seconds",
                     str(args.seconds), "--one-target", str(part)]
            subprocess.run(child, check=True, timeout=900, stdout=subprocess.DEVNULL)
            cores = json.loads(part.read_text())
            part.unlink()
            runs.append({"target": spec, "repeat": repeat, "started": started, "load_average_before": load,
                         "cores": cores})
            print(f"r{repeat} {spec}: {sum(cores.values()):.3f} cores "
                  f"({', '.join(f'{k} {v:.3f}' for k, v in list(cores.items())[:4])})", flush=True)
    result = {"command": " ".join([sys.executable, "-m", "loadtests.bench_idle", *(argv or sys.argv[1:])]),
              "seconds": args.seconds, "settle_s": args.settle, "cpus": os.cpu_count(), "runs": runs,
              "summary": aggregate(runs)}
    (args.out / "idle.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
