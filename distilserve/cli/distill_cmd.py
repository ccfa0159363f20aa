"""`distilserve distill teacher|student|sweep`.

Arguments are parsed here without torch, transformers or pandas; the recipes in `distill/`
are imported only inside the command functions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distill.parsing import parse_labels, parse_seeds, parse_size
from distilserve.cli import admin


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="train a teacher or students on any labelled data and export them as versions")
    dsub = p.add_subparsers(dest="distill_command", required=True, metavar="WHAT")

    t = dsub.add_parser("teacher", help="fine-tune an encoder on labelled data; export it as the next version")
    t.add_argument("--repo", type=Path, default=Path("model_repository"))
    t.add_argument("--model", default="sentiment", help="model name (a new name creates its folder)")
    t.add_argument("--version", default=None, help="version number (default: next free)")
    t.add_argument("--data", type=Path, default=None,
                   help="CSV, JSONL, Parquet or a saved datasets folder (default: the built-in tweet corpus)")
    t.add_argument("--text-column", default="text", help="column holding the text (default: text)")
    t.add_argument("--label-column", default="label", help="column holding the class name (default: label)")
    t.add_argument("--labels", type=parse_labels, default=None,
                   help="comma-separated label order, e.g. negative,positive (default: the data's labels, sorted)")
    t.add_argument("--base-model", type=Path, default=None,
                   help="local Hugging Face encoder folder with safetensors weights (default: offline MiniLM-L6)")
    t.add_argument("--max-seq-len", type=int, default=None, help="tokenizer truncation length (default 64)")
    for name in ("test", "val", "train"):
        t.add_argument(f"--{name}-size", type=parse_size, default=None,
                       help=f"{name} rows: a count (500) or a share (0.1)")
    t.add_argument("--quick", action="store_true", help="tiny random BERT instead of the base model (seconds)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.set_defaults(func=_teacher)

    st = dsub.add_parser("student", help="distil one student recipe (YAML) from the model's teacher version")
    st.add_argument("--config", default="student_l2", help="shipped recipe name (student_l2, ...) or a YAML path")
    st.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository root")
    st.add_argument("--model", default="sentiment", help="model name inside the repository")
    st.add_argument("--teacher-version", default=None, help="teacher version (default: the recipe's teacher_version)")
    st.add_argument("--teacher-dir", type=Path, default=None, help="teacher version folder (overrides the above)")
    st.add_argument("--seeds", type=parse_seeds, default=None, help="comma-separated seeds (default: the config's)")
    st.add_argument("--no-export", action="store_true", help="measure only; write no version")
    st.add_argument("--quick", action="store_true", help="few latency runs (smoke)")
    st.add_argument("--cache-dir", type=Path, default=None, help="teacher-logit cache (default .distilserve/cache)")
    st.set_defaults(func=_student)

    sw = dsub.add_parser("sweep", help="several recipes x seeds -> table, Pareto plot, exports")
    sw.add_argument("--configs", nargs="+", default=None,
                    help="recipe names or YAML paths (default: every shipped recipe except 'quick')")
    sw.add_argument("--seeds", type=parse_seeds, default=None, help="comma-separated seeds (default 0,1,2)")
    sw.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository root")
    sw.add_argument("--model", default="sentiment", help="model name inside the repository")
    sw.add_argument("--teacher-dir", type=Path, default=None, help="teacher version folder")
    sw.add_argument("--no-export", action="store_true", help="measure only; export no student")
    sw.add_argument("--quick", action="store_true", help="few latency runs (smoke)")
    sw.add_argument("--cache-dir", type=Path, default=None, help="teacher-logit cache (default .distilserve/cache)")
    sw.add_argument("--out", type=Path, default=Path("runs/distill"), help="where table.md and pareto.png go")
    sw.set_defaults(func=_sweep)


def _user_errors() -> tuple[type[Exception], ...]:
    """Exceptions that mean bad input (printed as one line), not a bug (a traceback)."""
    from pydantic import ValidationError

    from distill.errors import InputError

    return InputError, ValidationError, FileNotFoundError, FileExistsError


def _teacher(args: argparse.Namespace) -> int:
    from distill.teacher import TeacherConfig, run_teacher

    given = {
        "epochs": args.epochs, "seed": args.seed, "max_seq_len": args.max_seq_len,
        "data": str(args.data) if args.data else None, "labels": args.labels,
        "base_model": str(args.base_model) if args.base_model else None,
        "test_size": args.test_size, "val_size": args.val_size, "train_size": args.train_size,
    }
    overrides = {k: v for k, v in given.items() if v is not None}
    if args.data is not None:
        overrides.update(text_column=args.text_column, label_column=args.label_column)
    try:
        cfg = TeacherConfig.quick_defaults(**overrides) if args.quick else TeacherConfig(**overrides)
        path, card = run_teacher(cfg, args.repo, args.model, version=args.version)
    except _user_errors() as e:
        raise admin.CliError(str(e)) from e
    b1 = card.latency_at(1)
    print(f"exported {path}: test accuracy {card.accuracy:.4f} on {card.eval_examples} rows "
          f"(validation {card.validation_accuracy or float('nan'):.4f}); labels {card.labels}; "
          f"batch-1 p50 {b1.p50_ms if b1 else float('nan'):.2f} ms; {card.parameters:,} parameters")
    return 0


def _student(args: argparse.Namespace) -> int:
    from distill.config import load_config
    from distill.student import run_student

    try:
        cfg = load_config(args.config)
        if args.teacher_version is not None:
            cfg = cfg.model_copy(update={"teacher_version": args.teacher_version})
        result = run_student(cfg, args.repo, args.model, teacher_dir=args.teacher_dir, seeds=args.seeds,
                             export=not args.no_export, quick=args.quick, cache_dir=args.cache_dir)
    except _user_errors() as e:
        raise admin.CliError(str(e)) from e
    json.dump(result.summary(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def _sweep(args: argparse.Namespace) -> int:
    from distill import report
    from distill.config import load_config
    from distill.sweep import default_config_names, run_sweep

    try:
        configs = [load_config(name) for name in (args.configs or default_config_names())]
        result = run_sweep(configs, args.seeds if args.seeds is not None else [0, 1, 2], args.repo, args.model,
                           teacher_dir=args.teacher_dir, export_best=not args.no_export, quick=args.quick,
                           cache_dir=args.cache_dir)
    except _user_errors() as e:
        raise admin.CliError(str(e)) from e
    table, png = report.write_report(result.rows, args.out)
    print(table.read_text())
    print(f"wrote {table} and {png}; exported: {result.exported or 'none'}")
    return 0
