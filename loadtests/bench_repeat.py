"""The serving-overhead benchmark repeated and interleaved, with numbers anyone can recheck.

    python -m loadtests.bench_repeat --repeats 3 --old-tree /work/wt/old \\
        --targets triton,stack,stack@batching.max_tokens_per_call=512 --concurrency 1,2,4,8,16

Each repeat runs `loadtests.bench_overhead` once per variant: `new` (this tree) and, with
`--old-tree`, `old` (another checkout, e.g. `git worktree add --detach ../old a1fbdb6`, run with
the same interpreter and its own `serving/` first on the path; it measures only `--old-targets`).
The order alternates between repeats (new, old / old, new, ...) so a drift in the machine's
state does not favour one side. The load average is recorded before and after every run.

Written to `--out` (default `benchmarks/results/overhead-<UTC time>/`): every run's own
`overhead.csv` and `summary.json`, `points.csv` (all points with repeat and variant),
`summary.json` (per variant, target and concurrency: median and range of texts/s and p99; the
ratio to Triton direct of the same repeat, median and range; best texts/s with p99 within the
SLO per repeat) and `runs.json` (commands, times, load averages).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

from loadtests.bench_overhead import baseline_of

BASELINE = "triton"


# ---- pure: aggregation --------------------------------------------------------------------------
def spread(values: list[float]) -> dict:
    """Median and range of repeated measurements (None when there are none)."""
    if not values:
        return {"n": 0, "median": None, "min": None, "max": None}
    return {"n": len(values), "median": round(statistics.median(values), 3),
            "min": round(min(values), 3), "max": round(max(values), 3)}


def best_under_slo(points: list[dict], slo_ms: float) -> dict | None:
    """The highest-throughput point of one curve with p99 within the SLO and no error."""
    ok = [p for p in points if p["p99_ms"] <= slo_ms and p["errors"] == 0 and p["requests"] > 0]
    return max(ok, key=lambda p: p["rps"], default=None)


def aggregate(points: list[dict], slo_ms: float, baseline: str = BASELINE) -> dict:
    """points: dicts with repeat, variant, target, concurrency, requests, errors, rps, p99_ms.

    The ratio to the baseline pairs each point with the baseline's point of the same repeat and
    concurrency (from any variant: the baseline is the same program in every tree), so a slow
    repeat slows both sides of its ratio.
    """
    base = {(p["repeat"], p["concurrency"]): p["rps"] for p in points if p["target"] == baseline}
    # The Triton target with the same client and protocol (stack-oip: triton-http), where one ran.
    by_target = {(p["target"], p["repeat"], p["concurrency"]): p["rps"] for p in points}
    curves: dict[tuple[str, str], dict[int, dict[str, list[float]]]] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(list)))
    by_run: dict[tuple[str, str, int], list[dict]] = defaultdict(list)
    for p in points:
        cell = curves[(p["variant"], p["target"])][p["concurrency"]]
        cell["rps"].append(p["rps"])
        cell["p99_ms"].append(p["p99_ms"])
        cell["errors"].append(p["errors"])
        b = base.get((p["repeat"], p["concurrency"]))
        if b:
            cell["ratio"].append(p["rps"] / b)
        same = by_target.get((baseline_of(p["target"]), p["repeat"], p["concurrency"]))
        if same:
            cell["same_client"].append(p["rps"] / same)
        by_run[(p["variant"], p["target"], p["repeat"])].append(p)
    best = {key: best_under_slo(run, slo_ms) for key, run in by_run.items()}  # per (variant, target, repeat)
    base_best = {r: b for (_, t, r), b in best.items() if t == baseline}
    out: dict = {}
    for (variant, target), levels in sorted(curves.items()):
        mine = [(r, b) for (v, t, r), b in sorted(best.items()) if (v, t) == (variant, target) and b]
        best_ratio = [b["rps"] / base_best[r]["rps"] for r, b in mine if base_best.get(r)]
        out[f"{variant}:{target}"] = {
            "levels": {str(c): {"rps": spread(cell["rps"]), "p99_ms": spread(cell["p99_ms"]),
                                "ratio_to_" + baseline: spread(cell["ratio"]), "errors": int(sum(cell["errors"])),
                                **({f"ratio_to_{baseline_of(target)}_same_client": spread(cell["same_client"])}
                                   if cell["same_client"] else {})}
                       for c, cell in sorted(levels.items())},
            f"best_rps_p99_le_{slo_ms:g}ms": spread([b["rps"] for _, b in mine]),
            f"best_ratio_to_{baseline}": spread(best_ratio),
        }
    return out


def order(repeat: int, variants: list[str]) -> list[str]:
    """Alternate the variants' order between repeats."""
    return variants if repeat % 2 == 0 else list(reversed(variants))


# ---- I/O: running -------------------------------------------------------------------------------
def read_points(csv_path: Path, repeat: int, variant: str) -> list[dict]:
    """One bench_overhead run's overhead.csv as aggregate()'s points."""
    with open(csv_path) as f:
        return [{"repeat": repeat, "variant": variant, "target": row["target"],
                 "concurrency": int(row["concurrency"]), "requests": int(row["requests"]),
                 "errors": int(row["errors"]), "rps": float(row["rps"]),
                 "p50_ms": float(row["p50_ms"]), "p99_ms": float(row["p99_ms"])} for row in csv.DictReader(f)]


def summarize_dir(folder: Path, slo_ms: float) -> dict:
    """Aggregate runs made one by one (folders rN/ holding overhead.csv, N the repeat), as main() does."""
    points: list[dict] = []
    for run in sorted(folder.glob("r*/overhead.csv")):
        points += read_points(run, int(run.parent.name[1:].split("-")[0]), "new")
    if not points:
        raise SystemExit(f"--summarize: no r*/overhead.csv under {folder}")
    return {"slo_ms": slo_ms, "repeats": len({p["repeat"] for p in points}), "results": aggregate(points, slo_ms)}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--version", default="1")
    ap.add_argument("--targets", default="triton,stack")
    ap.add_argument("--old-tree", type=Path, help="another checkout to compare with (variant 'old')")
    ap.add_argument("--old-targets", default="stack")
    ap.add_argument("--concurrency", default="1,2,4,8,16")
    ap.add_argument("--duration", type=float, default=8.0)
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--slo-ms", type=float, default=100.0)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--summarize", type=Path, metavar="DIR",
                    help="only aggregate the runs already in DIR (rN/overhead.csv) into DIR/summary.json")
    args = ap.parse_args(argv)
    if args.summarize:
        summary = summarize_dir(args.summarize, args.slo_ms)
        (args.summarize / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(json.dumps(summary, indent=2))
        return
    out = args.out or Path("benchmarks/results") / time.strftime("overhead-%Y%m%dT%H%MZ", time.gmtime())
    out.mkdir(parents=True, exist_ok=True)
    here = Path.cwd()
    common = ["--version", args.version, "--concurrency", args.concurrency, "--duration", str(args.duration),
              "--warmup", str(args.warmup), "--slo-ms", str(args.slo_ms)]
    variants = {"new": (here, args.targets)}
    if args.old_tree:
        variants["old"] = (args.old_tree.resolve(), args.old_targets)
    runs, points = [], []
    for r in range(args.repeats):
        for name in order(r, list(variants)):
            tree, targets = variants[name]
            run_dir = (out / f"r{r + 1}-{name}").resolve()
            cmd = [sys.executable, "-m", "loadtests.bench_overhead", *common, "--targets", targets,
                   "--repository", str(tree / "model_repository"), "--out", str(run_dir)]
            env = {**os.environ, "PYTHONPATH": str(tree)}
            record = {"repeat": r + 1, "variant": name, "tree": str(tree), "cmd": cmd,
                      "git": subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                                            capture_output=True, text=True).stdout.strip(),
                      "utc_start": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "load_before": _load()}
            print(f"== repeat {r + 1} {name} ({record['git']}): load {record['load_before']}", flush=True)
            subprocess.run(cmd, cwd=tree, env=env, check=True, timeout=3600)
            record.update(utc_end=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), load_after=_load())
            runs.append(record)
            points += read_points(run_dir / "overhead.csv", r + 1, name)
            (out / "runs.json").write_text(json.dumps(runs, indent=2))
    with open(out / "points.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(points[0]))
        w.writeheader()
        w.writerows(points)
    summary = {"slo_ms": args.slo_ms, "repeats": args.repeats, "cpus": os.cpu_count(),
               "results": aggregate(points, args.slo_ms)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
