"""Headless locust runs against 127.0.0.1 only, bounded in time and requests, with CSV output.

    python -m loadtests.run_locust --shape step --duration 60 --out runs/loadtest/step
    python -m loadtests.run_locust --shape steady --duration 20 --params '{"rps": 40}'

Locust runs as its own process (gevent cannot share a process with Ray or torch). The exact
command is written to `<out>/command.txt` beside locust's CSV files.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from loadtests import shapes

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCUSTFILE = Path(__file__).resolve().parent / "locustfile.py"


SHED = "shed: refused at once with Retry-After (the version's queue was full)"


def failure_text(status: int, retry_after: str | None, body: str) -> str:
    """How locust names a non-200 answer. A 429 with Retry-After is load shedding doing its job, so
    every one gets the same name (one row in the failures CSV, whatever queue length its body
    quotes) and can be told apart from real failures. Anything else keeps its status and body,
    503s included: the stack answers 503 with Retry-After when a version is unavailable or the
    ingress is starting, never for overload (serving/dataplane.py)."""
    if status == 429 and retry_after:
        return SHED
    return f"HTTP {status}: {body[:200]}"


def check_host(url: str) -> str:
    """`url` if it is http(s) on a loopback address; ValueError otherwise (load stays on this machine)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"host must be a URL like http://127.0.0.1:8000, got {url!r}")
    host = parts.hostname
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:  # a DNS name: never resolved, never trusted
        loopback = False
    if not loopback:
        raise ValueError(f"host must be loopback (127.0.0.1, ::1 or localhost), got {host!r} in {url!r}")
    return url.rstrip("/")


def locust_command(host: str, csv_prefix: Path) -> list[str]:
    # No --run-time: the shape ends the run (tick() -> None) and `run` bounds the process.
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", check_host(host),
        "--stop-timeout", "5",
        "--csv", str(csv_prefix), "--csv-full-history",
        "--only-summary", "--loglevel", "WARNING",
        "--exit-code-on-error", "0",  # failures are read from the CSV, not the exit code
    ]


def run(host: str, shape: str, duration_s: float, out: Path, params: dict | None = None,
        per_user_rps: float = 10.0, max_requests: int = 200_000, max_batch: int = 64,
        request_log: bool = False, timeout_s: float | None = None) -> subprocess.CompletedProcess:
    """Run locust to completion; its CSVs land in `out` as locust_*.csv."""
    stages = shapes.build(shape, duration_s, **(params or {}))  # fail here, not inside locust
    out.mkdir(parents=True, exist_ok=True)
    cmd = locust_command(host, out / "locust")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep),
        "LOADTEST_SHAPE": shape,
        "LOADTEST_DURATION_S": str(duration_s),
        "LOADTEST_SHAPE_PARAMS": json.dumps(params or {}),
        "LOADTEST_PER_USER_RPS": str(per_user_rps),
        "LOADTEST_MAX_REQUESTS": str(max_requests),
        "LOADTEST_MAX_BATCH": str(max_batch),
        "LOADTEST_REQUEST_LOG": str(out / "requests.csv") if request_log else "",
    }
    shown = {k: env[k] for k in env if k.startswith("LOADTEST_")}
    (out / "command.txt").write_text(" ".join(f"{k}={shlex.quote(v)}" for k, v in shown.items())
                                     + " " + shlex.join(cmd) + "\n")
    limit = timeout_s or shapes.total_duration(stages) + 60
    return subprocess.run(cmd, env=env, cwd=REPO_ROOT, timeout=limit, capture_output=True, text=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--host", default="http://127.0.0.1:8000", help="loopback only")
    ap.add_argument("--shape", default="steady", choices=sorted(shapes.SHAPES))
    ap.add_argument("--duration", type=float, default=60.0, help="seconds (the whole shape)")
    ap.add_argument("--params", default="{}", help='shape parameters as JSON, e.g. \'{"levels": [10, 100, 1000]}\'')
    ap.add_argument("--per-user-rps", type=float, default=10.0, help="pace of one simulated user")
    ap.add_argument("--max-requests", type=int, default=200_000, help="stop after this many requests")
    ap.add_argument("--max-batch", type=int, default=64, help="cap on texts per request")
    ap.add_argument("--request-log", action="store_true", help="also write every request to requests.csv")
    ap.add_argument("--out", type=Path, default=Path("runs/loadtest"))
    args = ap.parse_args(argv)
    try:
        check_host(args.host)
        params = json.loads(args.params)
    except ValueError as e:
        ap.error(str(e))
    proc = run(args.host, args.shape, args.duration, args.out, params, args.per_user_rps, args.max_requests,
               args.max_batch, args.request_log)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    print(f"CSV: {args.out}/locust_stats.csv  (command: {args.out}/command.txt)")
    return proc.returncode


if __name__ == "__main__":
    raise SystemExit(main())
