"""`distilserve distill teacher|student|sweep`."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("distill", help="train the teacher or students and export them as versions")
    dsub = p.add_subparsers(dest="distill_command", required=True, metavar="WHAT")

    t = dsub.add_parser("teacher", help="fine-tune MiniLM-L6 on the tweet corpus; export as a version")
    t.add_argument("--repo", type=Path, default=Path("model_repository"))
    t.add_argument("--model", default="sentiment")
    t.add_argument("--version", default=None, help="version number (default: next free)")
    t.add_argument("--quick", action="store_true", help="tiny random BERT on a few hundred rows (seconds)")
    t.add_argument("--epochs", type=int, default=None)
    t.add_argument("--seed", type=int, default=None)
    t.set_defaults(func=_teacher)

    from distill import student, sweep

    st = student.add_arguments(dsub.add_parser("student", help="distil one student recipe (YAML) from the teacher"))
    st.set_defaults(func=student.run_args)
    sw = sweep.add_arguments(dsub.add_parser("sweep", help="several recipes x seeds -> table, Pareto plot, exports"))
    sw.set_defaults(func=sweep.run_args)


def _teacher(args: argparse.Namespace) -> int:
    from distill.teacher import TeacherConfig, run_teacher

    overrides = {k: v for k, v in {"epochs": args.epochs, "seed": args.seed}.items() if v is not None}
    cfg = TeacherConfig.quick_defaults(**overrides) if args.quick else TeacherConfig(**overrides)
    path, card = run_teacher(cfg, args.repo, args.model, version=args.version)
    b1 = card.latency_at(1)
    print(f"exported {path}: accuracy {card.accuracy:.4f} on {card.eval_examples} held-out rows; "
          f"batch-1 p50 {b1.p50_ms if b1 else float('nan'):.2f} ms; {card.parameters:,} parameters")
    return 0
