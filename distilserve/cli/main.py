"""`distilserve <command>`: one module per command; `make` targets only wrap these."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from distilserve.cli import admin

# One module per command, each with `add_parser(subparsers)`; add new commands here.
COMMANDS = (
    "serve_cmd",
    "up_cmd",
    "down_cmd",
    "deploy_stack_cmd",
    "distill_cmd",
    "import_cmd",
    "versions_cmd",
    "rollout_cmd",
    "history_cmd",
    "admin",
    "check_cmd",
    "batch_cmd",
    "deploy_cmd",
    "compile_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distilserve", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"distilserve.cli.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except admin.CliError as e:
        print(f"distilserve: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
