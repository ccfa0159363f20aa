"""Render a sweep: a markdown table and a Pareto plot (accuracy vs batch-1 p50 latency)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: benchmarks and CI have no display
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from distill.sweep import Row  # noqa: E402

_COLUMNS = ("model", "kind", "accuracy", "b1 p50/p99 ms", "b32 p50/p99 ms", "params", "MB",
            "speedup b1", "speedup b32", "acc ratio", "Pareto", "version")


def _num(value: float | None, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _cells(row: Row) -> list[str]:
    acc = f"{row.accuracy:.4f}" + (f" ± {row.accuracy_std:.4f} (n={row.seeds})" if row.seeds > 1 else "")
    b32 = "—" if row.p50_b32 is None else f"{row.p50_b32:.1f} / {_num(row.p99_b32, '.1f')}"
    return [
        row.name, row.kind, acc, f"{row.p50_b1:.2f} / {row.p99_b1:.2f}", b32,
        _num(None if row.parameters is None else row.parameters / 1e6, ".2f") + ("M" if row.parameters else ""),
        _num(None if row.bytes is None else row.bytes / 1e6, ".1f"),
        _num(row.speedup_b1, ".2f") + ("×" if row.speedup_b1 is not None else ""),
        _num(row.speedup_b32, ".2f") + ("×" if row.speedup_b32 is not None else ""),
        _num(None if row.accuracy_ratio is None else 100 * row.accuracy_ratio, ".1f")
        + ("%" if row.accuracy_ratio is not None else ""),
        "yes" if row.pareto else "", row.version or "",
    ]


def markdown_table(rows: Sequence[Row]) -> str:
    """GitHub markdown table, one line per row, in the given order."""
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "|".join("---" for _ in _COLUMNS) + "|"]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def pareto_plot(rows: Sequence[Row], path: Path) -> Path:
    """Accuracy vs batch-1 p50 latency (log x); students labelled, the front joined by a line."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    style = {"teacher": ("s", "tab:red"), "baseline": ("^", "tab:gray"), "student": ("o", "tab:blue")}
    for row in rows:
        marker, colour = style.get(row.kind, ("o", "black"))
        ax.scatter(row.p50_b1, row.accuracy, marker=marker, color=colour, s=60, zorder=3,
                   edgecolors="black" if row.pareto else "none")
        if row.accuracy_std and row.seeds > 1:
            ax.errorbar(row.p50_b1, row.accuracy, yerr=row.accuracy_std, color=colour, capsize=3, zorder=2)
        ax.annotate(row.name, (row.p50_b1, row.accuracy), textcoords="offset points", xytext=(6, 4), fontsize=8)
    front = sorted((r for r in rows if r.pareto), key=lambda r: r.p50_b1)
    if len(front) > 1:
        ax.plot([r.p50_b1 for r in front], [r.accuracy for r in front], "--", color="tab:blue", alpha=0.5,
                label="Pareto front (teacher + students)")
        ax.legend(loc="lower right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("batch-1 p50 latency, ms (log scale)")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("Distillation: accuracy vs latency")
    ax.grid(True, which="both", alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def write_report(rows: Sequence[Row], out_dir: Path) -> tuple[Path, Path]:
    """`<out_dir>/table.md` (the table and the goal summary) and `<out_dir>/pareto.png`."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    table = out_dir / "table.md"
    table.write_text(markdown_table(rows) + "\n" + goal_summary(rows) + "\n")
    return table, pareto_plot(rows, out_dir / "pareto.png")


def goal_summary(rows: Sequence[Row], min_ratio: float = 0.97, min_speedup: float = 10.0) -> str:
    """Whether some student reaches `min_ratio` of the teacher's accuracy at `min_speedup` batch-1
    speedup; if not, how far the closest students are on each axis."""
    students = [r for r in rows if r.kind == "student" and r.accuracy_ratio is not None and r.speedup_b1]
    if not students:
        return "goal: no student measured"
    hits = [r for r in students if r.accuracy_ratio >= min_ratio and r.speedup_b1 >= min_speedup]
    if hits:
        best = max(hits, key=lambda r: r.speedup_b1 or 0.0)
        return (f"goal reached by {best.name}: {100 * best.accuracy_ratio:.1f}% of the teacher's accuracy "
                f"at {best.speedup_b1:.2f}x lower batch-1 p50 latency")
    fastest = max(students, key=lambda r: r.speedup_b1 or 0.0)
    closest = max(students, key=lambda r: r.accuracy_ratio or 0.0)
    lines = [f"goal ({100 * min_ratio:.0f}% of the teacher's accuracy at >= {min_speedup:.0f}x lower batch-1 latency) not reached:"]
    for label, r in (("fastest", fastest), ("most accurate", closest)):
        speed = ("meets the speed goal" if r.speedup_b1 >= min_speedup
                 else f"needs {min_speedup / r.speedup_b1:.2f}x more speed")
        acc = ("meets the accuracy goal" if r.accuracy_ratio >= min_ratio
               else f"{100 * (min_ratio - r.accuracy_ratio):.1f} points short on accuracy")
        lines.append(f"- {label}: {r.name}, {100 * r.accuracy_ratio:.1f}% at {r.speedup_b1:.2f}x: {speed}, {acc}")
    return "\n".join(lines)
