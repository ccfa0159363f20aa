"""`distilserve compile`: a torch version -> ONNX Runtime (optionally int8) as the next version.

    distilserve compile --model sentiment --version 2 --runtime onnx [--quantize int8] [--force]

The new version is measured against its parent in the same run (accuracy on the parent's test
rows, label agreement, latency at batch 1 and 32) and refused when it loses more than
--max-drop-points (0.5) accuracy points, unless --force. Exit status 1 when refused, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from distilserve.cli.admin import CliError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compile", help="compile a version to ONNX Runtime (optionally int8) as the next version")
    p.add_argument("--model", default="sentiment", help="model name inside the repository")
    p.add_argument("--version", required=True, help="the torch version to compile, e.g. 2")
    p.add_argument("--runtime", choices=["onnx"], default="onnx", help="target runtime")
    p.add_argument("--quantize", choices=["int8"], default=None, help="dynamic int8 quantization of the weights")
    p.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository root")
    p.add_argument("--force", action="store_true", help="keep the new version however much accuracy drops")
    p.add_argument("--max-drop-points", type=float, default=0.5,
                   help="accuracy points (of 100) the new version may lose against its parent (default 0.5)")
    p.add_argument("--latency-runs", type=int, default=50, help="timed runs per batch size (each runtime)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distill.compile import CompileRefused, compile_version  # heavy: torch, onnx

    try:
        result = compile_version(args.repo, args.model, args.version, runtime=args.runtime,
                                 quantize=args.quantize, force=args.force, max_drop_points=args.max_drop_points,
                                 latency_runs=args.latency_runs)
    except CompileRefused as e:
        print(f"distilserve: compile refused: {e}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError) as e:
        raise CliError(str(e)) from None
    print(result.summary())
    return 0
