"""`distilserve import`: an existing Hugging Face sequence-classification folder becomes the next
version of a model, with a measured card (see distill/import_model.py)."""

from __future__ import annotations

import argparse
from pathlib import Path

from distilserve.cli import admin


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import", help="import a Hugging Face classifier folder as the next version of a model")
    p.add_argument("--model", required=True, help="model name in the repository (a new name creates its folder)")
    p.add_argument("--from", dest="source", type=Path, required=True,
                   help="folder with config.json, model.safetensors and tokenizer files")
    p.add_argument("--eval", dest="eval_file", type=Path, required=True,
                   help="labelled CSV/JSONL/Parquet file or saved datasets folder the card's accuracy is measured on")
    p.add_argument("--text-column", default="text", help="column holding the text (default: text)")
    p.add_argument("--label-column", default="label", help="column holding the class name (default: label)")
    p.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository root")
    p.add_argument("--version", default=None, help="version number (default: next free)")
    p.add_argument("--max-seq-len", type=int, default=128, help="tokenizer truncation length when served (default 128)")
    p.add_argument("--latency-runs", type=int, default=50, help="timed runs per batch size (default 50)")
    p.set_defaults(func=_import)


def _import(args: argparse.Namespace) -> int:
    from distill.errors import InputError
    from distill.import_model import import_model

    try:
        path, card = import_model(args.source, args.repo, args.model, args.eval_file, text_column=args.text_column,
                                  label_column=args.label_column, max_seq_len=args.max_seq_len, version=args.version,
                                  latency_runs=args.latency_runs)
    except (InputError, FileNotFoundError, FileExistsError) as e:
        raise admin.CliError(str(e)) from e
    b1, b32 = card.latency_at(1), card.latency_at(32)
    print(f"imported {args.source} as {path}: accuracy {card.accuracy:.4f} on {card.eval_examples} rows; "
          f"labels {card.labels}; p50 {b1.p50_ms if b1 else float('nan'):.2f} ms (batch 1), "
          f"{b32.p50_ms if b32 else float('nan'):.2f} ms (batch 32); {card.parameters:,} parameters, "
          f"{card.bytes:,} bytes")
    return 0
