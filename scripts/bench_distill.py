"""Distillation benchmark: sweep student recipes against the teacher, table + Pareto plot.

    .venv/bin/python scripts/bench_distill.py                  # shipped recipes, seeds 0,1,2
    .venv/bin/python scripts/bench_distill.py --seeds 0 --no-export
    .venv/bin/python scripts/bench_distill.py --quick          # tiny teacher in a temp repo (smoke)

Full mode reads the teacher from `<repo>/sentiment/1` and, unless `--no-export`, exports the
Pareto-front students as new versions of that repository: point `--repo` at a scratch copy
for development runs. Writes `<out>/table.md` and `<out>/pareto.png` (default runs/distill).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from distill import report  # noqa: E402
from distill.baseline import run_baseline  # noqa: E402
from distill.config import DistillConfig, load_config  # noqa: E402
from distill.parsing import parse_seeds  # noqa: E402
from distill.student import teacher_splits  # noqa: E402
from distill.sweep import default_config_names, run_sweep, summaries_from_log, tabulate  # noqa: E402
from distilserve.core.card import ModelCard  # noqa: E402


def quick_repo(where: Path) -> Path:
    """A scratch repository whose sentiment/1 is the quick tiny teacher."""
    from distill.teacher import TeacherConfig, run_teacher

    (where / "sentiment").mkdir(parents=True)
    for name in ("config.pbtxt", "model.py"):
        shutil.copy(ROOT / "model_repository" / "sentiment" / name, where / "sentiment" / name)
    run_teacher(TeacherConfig.quick_defaults(), where)
    return where


def tabulate_log(log_path: Path, repo: Path, cfg: DistillConfig, out: Path) -> int:
    """Rows for the students a sweep logged before it was stopped; nothing is exported."""
    summaries = summaries_from_log(log_path.read_text(errors="replace"))
    if not summaries:
        print(f"no 'student done' lines in {log_path}", file=sys.stderr)
        return 1
    card = ModelCard.read(repo / "sentiment" / cfg.teacher_version)
    rows = tabulate(summaries, card, run_baseline(teacher_splits(card)))
    table, png = report.write_report(rows, out)
    print(table.read_text())
    print(f"from {log_path}: {[s['name'] for s in summaries]}; wrote {table} and {png}")
    for s in summaries:
        print(f"{s['name']}: seeds {s['accuracy_seeds']} train_rows={s['train_rows']} transfer_rows={s['transfer_rows']}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny teacher + the 'quick' recipe in a temp repo")
    parser.add_argument("--configs", nargs="+", default=None, help="recipe names or YAML paths")
    parser.add_argument("--seeds", type=parse_seeds, default=None, help="comma-separated seeds (default 0,1,2; quick 0,1)")
    parser.add_argument("--repo", type=Path, default=ROOT / "model_repository", help="model repository root")
    parser.add_argument("--no-export", action="store_true", help="export no student")
    parser.add_argument("--cache-dir", type=Path, default=None, help="teacher-logit cache")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/distill[/quick])")
    parser.add_argument("--from-log", type=Path, default=None,
                        help="tabulate the students an interrupted sweep logged (re-measures only the baseline)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    names = args.configs or (["quick"] if args.quick else default_config_names())
    seeds = args.seeds or ([0, 1] if args.quick else [0, 1, 2])
    out = args.out or ROOT / "runs" / "distill" / ("quick" if args.quick else "")
    t0 = time.perf_counter()
    if args.from_log is not None:
        return tabulate_log(args.from_log, args.repo, load_config(names[0]), out)
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as tmp:
        repo = quick_repo(Path(tmp) / "repo") if args.quick else args.repo
        cache_dir = args.cache_dir or (Path(tmp) / "cache" if args.quick else None)
        result = run_sweep([load_config(n) for n in names], seeds, repo, teacher_dir=None,
                           export_best=not args.no_export, quick=args.quick, cache_dir=cache_dir)
    table, png = report.write_report(result.rows, out)
    print(table.read_text())
    print(f"configs: {names}; seeds: {seeds}; wall: {time.perf_counter() - t0:.0f} s")
    print(f"wrote {table} and {png}; exported: {result.exported or 'none'}")
    for r in result.students:
        print(f"{r.name}: seeds {r.accuracy_seeds} train_rows={r.train_rows} transfer_rows={r.transfer_rows} "
              f"cache_hits={r.cache_hits}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
