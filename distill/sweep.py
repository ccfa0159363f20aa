"""Run several student recipes against one teacher, tabulate them beside the teacher and the
TF-IDF baseline, and export the students on the accuracy / batch-1 latency Pareto front."""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from distill import baseline as baseline_mod
from distill.config import DistillConfig, load_config, shipped_configs
from distill.student import (
    StudentResult,
    export_student,
    load_teacher,
    parse_seeds,
    run_student,
    teacher_dir_for,
    teacher_splits,
)
from distilserve.card import LatencyStats

log = logging.getLogger(__name__)


class Row(BaseModel):
    """One line of the sweep table; latencies in ms, ratios against the teacher of the same run."""

    name: str
    kind: str = Field(description="teacher, baseline or student")
    accuracy: float
    accuracy_std: float = 0.0
    seeds: int = 1
    p50_b1: float
    p99_b1: float
    p50_b32: float | None = None
    p99_b32: float | None = None
    parameters: int | None = None
    bytes: int | None = None
    speedup_b1: float | None = None
    speedup_b32: float | None = None
    accuracy_ratio: float | None = None
    pareto: bool = False
    version: str | None = None


@dataclass
class SweepResult:
    rows: list[Row]
    students: list[StudentResult]
    chosen: list[str]  # students on the Pareto front
    exported: dict[str, str] = field(default_factory=dict)  # student name -> version


def pareto_front(points: Sequence[tuple[str, float, float]]) -> list[str]:
    """Ids of the (id, accuracy, latency) points no other point dominates, in input order.

    `b` dominates `a` when it is at least as accurate and at least as fast, and strictly better
    in one. Exact duplicates do not dominate each other (both stay). NaN points never qualify.
    """
    clean = [p for p in points if not (math.isnan(p[1]) or math.isnan(p[2]))]
    return [
        pid for pid, acc, lat in clean
        if not any(a >= acc and t <= lat and (a > acc or t < lat) for _, a, t in clean)
    ]


def _at(stats: list[LatencyStats], batch_size: int) -> LatencyStats | None:
    return next((s for s in stats if s.batch_size == batch_size), None)


def latency_cells(stats: list[LatencyStats]) -> dict[str, float | None]:
    b1, b32 = _at(stats, 1), _at(stats, 32)
    if b1 is None:
        raise ValueError(f"batch-1 latency is required, got batch sizes {[s.batch_size for s in stats]}")
    return {"p50_b1": b1.p50_ms, "p99_b1": b1.p99_ms,
            "p50_b32": b32.p50_ms if b32 else None, "p99_b32": b32.p99_ms if b32 else None}


def student_row(r: StudentResult) -> Row:
    return Row(name=r.name, kind="student", accuracy=r.accuracy, accuracy_std=r.accuracy_std,
               seeds=len(r.accuracy_seeds), parameters=r.parameters, bytes=r.bytes,
               speedup_b1=r.speedup.get(1), speedup_b32=r.speedup.get(32), accuracy_ratio=r.accuracy_ratio,
               version=r.card.version if r.card else None, **latency_cells(r.latency))


def run_sweep(
    configs: list[DistillConfig],
    seeds: list[int] | None,
    repo: Path,
    model_name: str = "sentiment",
    *,
    teacher_dir: Path | None = None,
    export_best: bool = False,
    quick: bool = False,
    cache_dir: Path | None = None,
    with_baseline: bool = True,
) -> SweepResult:
    """Train every recipe (no export yet), then export the Pareto-front students if asked.

    The teacher row's latency is the one measured beside the first student; each student's
    speedup uses the teacher latency measured in its own run (same process, same texts).
    """
    if not configs:
        raise ValueError(f"run_sweep needs at least one config, e.g. {sorted(shipped_configs())}")
    versions = {c.teacher_version for c in configs}
    if len(versions) != 1 and teacher_dir is None:
        raise ValueError(f"all configs must share one teacher_version to share a table, got {sorted(versions)}")
    results = []
    for cfg in configs:
        r = run_student(cfg, repo, model_name, teacher_dir=teacher_dir, seeds=seeds, export=False,
                        quick=quick, cache_dir=cache_dir)
        # Logged as each finishes, so a long sweep that dies late still leaves its numbers.
        log.info("student done: %s", json.dumps(r.summary()))
        results.append(r)
    first = results[0]
    t_dir = teacher_dir or teacher_dir_for(repo, model_name, configs[0].teacher_version)
    teacher = load_teacher(t_dir)
    rows = [Row(name=f"teacher v{teacher.card.version}", kind="teacher", accuracy=first.teacher_accuracy,
                parameters=teacher.card.parameters, bytes=teacher.card.bytes, speedup_b1=1.0, speedup_b32=1.0,
                accuracy_ratio=1.0, version=teacher.card.version, **latency_cells(first.teacher_latency))]
    if with_baseline:
        splits = teacher_splits(teacher.card, configs[0])
        b = baseline_mod.run_baseline(splits, latency_runs=5 if quick else 50)
        cells = latency_cells(b.latency)
        rows.append(Row(name="tfidf+logreg", kind="baseline", accuracy=b.accuracy, parameters=b.parameters,
                        speedup_b1=rows[0].p50_b1 / cells["p50_b1"] if cells["p50_b1"] else None,
                        accuracy_ratio=b.accuracy / first.teacher_accuracy if first.teacher_accuracy else None,
                        **cells))
    # The baseline is not a servable version: the front is drawn among teacher and students.
    front = pareto_front([(rows[0].name, rows[0].accuracy, rows[0].p50_b1)]
                         + [(r.name, r.accuracy, r.latency[0].p50_ms if r.latency else math.nan) for r in results])
    chosen = [r.name for r in results if r.name in front]
    exported: dict[str, str] = {}
    if export_best:
        for r in results:
            if r.name in chosen:
                export_student(r, teacher.card, repo, model_name)
                assert r.card is not None
                exported[r.name] = r.card.version
    student_rows = [student_row(r) for r in results]
    for row in [rows[0], *student_rows]:
        row.pareto = row.name in front
    return SweepResult(rows=rows + student_rows, students=results, chosen=chosen, exported=exported)


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--configs", nargs="+", default=None,
                        help="recipe names or YAML paths (default: every shipped recipe except 'quick')")
    parser.add_argument("--seeds", type=parse_seeds, default=None, help="comma-separated seeds (default 0,1,2)")
    parser.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository root")
    parser.add_argument("--model", default="sentiment", help="model name inside the repository")
    parser.add_argument("--teacher-dir", type=Path, default=None, help="teacher version folder")
    parser.add_argument("--no-export", action="store_true", help="measure only; export no student")
    parser.add_argument("--quick", action="store_true", help="few latency runs (smoke)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="teacher-logit cache (default .distilserve/cache)")
    parser.add_argument("--out", type=Path, default=Path("runs/distill"), help="where table.md and pareto.png go")
    return parser


def default_config_names() -> list[str]:
    return [name for name in shipped_configs() if name != "quick"]


def main(argv: list[str] | None = None) -> int:
    """`distilserve distill sweep`: run the recipes, print the table, write table.md + pareto.png."""
    from distill import report  # matplotlib only when a report is drawn

    args = add_arguments(argparse.ArgumentParser(prog="distilserve distill sweep")).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    configs = [load_config(name) for name in (args.configs or default_config_names())]
    result = run_sweep(configs, args.seeds if args.seeds is not None else [0, 1, 2], args.repo, args.model,
                       teacher_dir=args.teacher_dir, export_best=not args.no_export, quick=args.quick,
                       cache_dir=args.cache_dir)
    table, png = report.write_report(result.rows, args.out)
    print(table.read_text())
    print(f"wrote {table} and {png}; exported: {result.exported or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
