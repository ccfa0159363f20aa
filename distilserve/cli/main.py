"""`distilserve <command>`: one module per command; `make` targets only wrap these."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from distilserve.cli import admin, distill_cmd, serve_cmd, versions_cmd


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="distilserve", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    serve_cmd.add_parser(sub)
    distill_cmd.add_parser(sub)
    versions_cmd.add_parser(sub)
    admin.add_parsers(sub)
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
