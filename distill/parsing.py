"""Command-line value parsers for the distill commands: standard library only, so `distilserve
--help` stays light."""

from __future__ import annotations

import argparse


def parse_size(text: str) -> int | float:
    """'500' -> 500 rows; '0.1' -> a 10% share."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a row count like 500 or a share like 0.1, got {text!r}") from None
    if value.is_integer() and value >= 1:
        return int(value)
    if 0 < value < 1:
        return value
    raise argparse.ArgumentTypeError(f"expected a row count >= 1 or a share in (0, 1), got {text!r}")


def parse_labels(text: str) -> list[str]:
    """'neg,pos' -> ['neg', 'pos'] (the label order of the model's outputs)."""
    return [x.strip() for x in text.split(",")]


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' -> [0, 1, 2]; an int n -> range(n) is NOT implied: list the seeds."""
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--seeds takes a comma-separated list of ints like 0,1,2, got {text!r}") from None
