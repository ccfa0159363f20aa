"""The student goal, re-measured: accuracy ratio and batch-1 speed-up of versions against the teacher.

    .venv/bin/python scripts/bench_student_goal.py --repo /tmp/distill-repo --teacher 1 --versions 2,3,4 \
        --repeats 3 --out benchmarks/results/student-goal-<date>.json

Every version is loaded with the repository's own model.py (the code Triton runs: torch or ONNX
Runtime, whatever the version holds), in this process, with the same thread count. Accuracy:
every version on the same rows, the teacher's held-out test rows (`distill.compile.held_out_rows`
of the teacher's card). Latency: `distill.evaluate.time_batches` at batch 1 and 32, the versions
interleaved within each repeat and the order rotated between repeats; the speed-up of a repeat is
the teacher's p50 / the version's p50 of that repeat. Reported: median and range over repeats, and
the load average before and after. Goal (issue 16): >= 97% of the teacher's accuracy at >= 10x
batch-1 speed.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ACCURACY_GOAL, SPEEDUP_GOAL = 0.97, 10.0


def rotated(items: list[str], k: int) -> list[str]:
    k %= max(1, len(items))
    return items[k:] + items[:k]


def summarise(teacher: str, accuracy: dict[str, float], b1: dict[str, list[float]],
              b32: dict[str, list[float]]) -> dict[str, dict]:
    """Per version: accuracy ratio and per-repeat speed-ups (teacher p50 / version p50), median and range."""
    out = {}
    for v in accuracy:
        s1 = [t / x for t, x in zip(b1[teacher], b1[v], strict=True)]
        s32 = [t / x for t, x in zip(b32[teacher], b32[v], strict=True)]
        ratio = accuracy[v] / accuracy[teacher]
        out[v] = {
            "accuracy": round(accuracy[v], 4), "accuracy_ratio": round(ratio, 4),
            "b1_p50_ms": _mr(b1[v], 3), "b32_p50_ms": _mr(b32[v], 2),
            "speedup_b1": _mr(s1, 2), "speedup_b32": _mr(s32, 2),
            "goal_met": ratio >= ACCURACY_GOAL and statistics.median(s1) >= SPEEDUP_GOAL,
        }
    return out


def _mr(xs: list[float], nd: int) -> dict:
    """Median and range (loadtests/bench_repeat.spread), plus every repeat's value."""
    from loadtests.bench_repeat import spread

    return {**spread(xs), "all": [round(x, nd) for x in xs]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repo", type=Path, required=True, help="model repository holding every version")
    p.add_argument("--model", default="sentiment")
    p.add_argument("--teacher", default="1")
    p.add_argument("--versions", required=True, help="comma-separated versions to compare with the teacher")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--runs", type=int, default=100, help="timed runs per batch size per repeat")
    p.add_argument("--threads", type=int, default=2, help="torch / ONNX Runtime threads (model.py's TORCH_NUM_THREADS)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    from distill.compile import held_out_rows, predict_all
    from distill.evaluate import time_batches
    from distill.export import load_model_py
    from distilserve.core.card import ModelCard

    model_dir = args.repo / args.model
    versions = [args.teacher, *[v for v in args.versions.split(",") if v != args.teacher]]
    module = load_model_py(model_dir)
    import torch

    torch.set_num_threads(args.threads)
    clfs = {v: module.Classifier(model_dir / v, threads=args.threads) for v in versions}
    texts, labels = held_out_rows(ModelCard.read(model_dir / args.teacher), model_dir / args.teacher)
    load_before = os.getloadavg()[0]
    t0 = time.time()
    accuracy = {v: float((predict_all(clfs[v].predict, texts).argmax(axis=1) == labels).mean()) for v in versions}
    b1: dict[str, list[float]] = {v: [] for v in versions}
    b32: dict[str, list[float]] = {v: [] for v in versions}
    orders = []
    for r in range(args.repeats):
        order = rotated(versions, r)
        orders.append(order)
        for v in order:
            s1, s32 = time_batches(clfs[v].predict, texts, runs=args.runs)
            b1[v].append(s1.p50_ms)
            b32[v].append(s32.p50_ms)
            print(f"repeat {r + 1} v{v}: b1 {s1.p50_ms:.2f} ms, b32 {s32.p50_ms:.1f} ms", flush=True)
    result = {
        "command": " ".join([sys.executable, *sys.argv]), "repo": str(args.repo), "teacher": args.teacher,
        "threads": args.threads, "eval_rows": len(texts), "repeats": args.repeats, "runs": args.runs,
        "orders": orders, "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "seconds": round(time.time() - t0, 1),
        "kinds": {v: _kind(ModelCard.read(model_dir / v)) for v in versions},
        "versions": summarise(args.teacher, accuracy, b1, b32),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["versions"], indent=2))
    return 0


def _kind(card: object) -> str:
    """'teacher torch', 'student onnx int8-dynamic', ..."""
    return " ".join(x for x in (card.kind, card.runtime, card.quantization) if x)  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
