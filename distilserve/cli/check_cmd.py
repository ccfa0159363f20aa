"""`distilserve check`: point the conformance/robustness suite at any OIP deployment."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("check", help="check a deployment: validation, output format, latency, errors")
    p.add_argument("--url", required=True, help="base URL, e.g. http://127.0.0.1:8000")
    p.add_argument("--model", required=True, help="model name to check")
    p.add_argument("--junit", type=Path, default=None, help="write a JUnit XML report to FILE")
    p.add_argument("--latency-budget-ms", type=_positive, default=1000.0, help="p99 budget under load")
    p.add_argument("--p50-budget-ms", type=_positive, default=None, help="p50 budget (default: the p99 budget)")
    p.add_argument("--duration", type=_positive, default=5.0, help="seconds of load for the latency check")
    p.add_argument("--concurrency", type=int, choices=range(1, 65), default=4, metavar="N",
                   help="concurrent clients for the latency check (1-64)")
    p.add_argument("--max-requests", type=int, default=5000, help="cap on requests of the latency check")
    p.add_argument("--timeout", type=_positive, default=30.0, help="per-request timeout in seconds")
    p.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    p.set_defaults(func=run)


def _positive(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
    return value


def run(args: argparse.Namespace) -> int:
    from distilserve.check import SuiteSettings, run_suite

    settings = SuiteSettings(
        url=args.url, model=args.model, latency_budget_ms=args.latency_budget_ms,
        p50_budget_ms=args.p50_budget_ms, duration_s=args.duration, concurrency=args.concurrency,
        max_requests=args.max_requests, timeout_s=args.timeout,
    )
    report = run_suite(settings)
    text = report.render_text()
    if args.quiet:
        lines = text.splitlines()
        text = "\n".join([lines[0], *(x for x in lines[1:-1] if "  FAIL  " in x), lines[-1]]) + "\n"
    sys.stdout.write(text)
    if args.junit is not None:
        args.junit.parent.mkdir(parents=True, exist_ok=True)
        args.junit.write_text(report.to_junit_xml(), encoding="utf-8")
    return 0 if report.passed else 1
