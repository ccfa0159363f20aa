"""Run several student recipes against one teacher, tabulate them beside the teacher and the
TF-IDF baseline, and export the students on the accuracy / batch-1 latency Pareto front.

Rendering (markdown table, Pareto plot) is `distill.report`, which imports this module's `Row`;
this module never imports the report (no cycle, and no matplotlib for a sweep without one)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field

from distill import baseline as baseline_mod
from distill.baseline import BaselineResult
from distill.config import DistillConfig, shipped_configs
from distill.student import (
    StudentResult,
    export_student,
    run_student,
    teacher_dir_for,
    teacher_splits,
)
from distilserve.core.card import LatencyStats, ModelCard

log = logging.getLogger(__name__)
_DONE = "student done: "


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


def summary_row(summary: dict) -> Row:
    """A student's row from `StudentResult.summary()` (also what a sweep logs per student)."""
    speedup = {int(k): v for k, v in summary["speedup"].items()}
    return Row(name=summary["name"], kind="student", accuracy=summary["accuracy"],
               accuracy_std=summary["accuracy_std"], seeds=len(summary["accuracy_seeds"]),
               parameters=summary["parameters"], bytes=summary["bytes"], speedup_b1=speedup.get(1),
               speedup_b32=speedup.get(32), accuracy_ratio=summary["accuracy_ratio"],
               **latency_cells([LatencyStats.model_validate(s) for s in summary["latency"]]))


def tabulate(summaries: list[dict], teacher_card: ModelCard, baseline: BaselineResult | None) -> list[Row]:
    """Teacher, baseline and student rows, with the Pareto front (teacher + students) marked.

    The teacher row's latency is the one measured beside the first student; each student's
    speedup uses the teacher latency measured in its own run (same process, same texts).
    The baseline is not a servable version, so it is drawn but never on the front.
    """
    if not summaries:
        raise ValueError("tabulate needs at least one student summary")
    first = summaries[0]
    t_acc = first["teacher_accuracy"]
    rows = [Row(name=f"teacher v{teacher_card.version}", kind="teacher", accuracy=t_acc,
                parameters=teacher_card.parameters, bytes=teacher_card.bytes, speedup_b1=1.0, speedup_b32=1.0,
                accuracy_ratio=1.0, version=teacher_card.version,
                **latency_cells([LatencyStats.model_validate(s) for s in first["teacher_latency"]]))]
    if baseline is not None:
        cells = latency_cells(baseline.latency)
        rows.append(Row(name="tfidf+logreg", kind="baseline", accuracy=baseline.accuracy,
                        parameters=baseline.parameters,
                        speedup_b1=rows[0].p50_b1 / cells["p50_b1"] if cells["p50_b1"] else None,
                        accuracy_ratio=baseline.accuracy / t_acc if t_acc else None, **cells))
    rows += [summary_row(s) for s in summaries]
    servable = [r for r in rows if r.kind != "baseline"]
    front = set(pareto_front([(r.name, r.accuracy, r.p50_b1) for r in servable]))
    for r in servable:
        r.pareto = r.name in front
    return rows


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
        log.info("%s%s", _DONE, json.dumps(r.summary()))
        results.append(r)
    t_dir = teacher_dir or teacher_dir_for(repo, model_name, configs[0].teacher_version)
    teacher_card = ModelCard.read(t_dir)
    baseline = None
    if with_baseline:
        splits = teacher_splits(teacher_card)
        baseline = baseline_mod.run_baseline(splits, latency_runs=5 if quick else 50)
    rows = tabulate([r.summary() for r in results], teacher_card, baseline)
    chosen = [row.name for row in rows if row.kind == "student" and row.pareto]
    exported: dict[str, str] = {}
    if export_best:
        by_name = {r.name: r for r in results}
        for row in rows:
            if row.name in chosen:
                export_student(by_name[row.name], teacher_card, repo, model_name)
                card = by_name[row.name].card
                assert card is not None
                exported[row.name] = row.version = card.version
                row.bytes = card.bytes
    return SweepResult(rows=rows, students=results, chosen=chosen, exported=exported)


def summaries_from_log(text: str) -> list[dict]:
    """The per-student summaries a sweep logged ("student done: {...}"), last one per name wins."""
    found: dict[str, dict] = {}
    for line in text.splitlines():
        marker = line.find(_DONE)
        if marker >= 0:
            summary = json.loads(line[marker + len(_DONE):])
            found[summary["name"]] = summary
    return list(found.values())


def default_config_names() -> list[str]:
    return [name for name in shipped_configs() if name != "quick"]
