"""Rollback switch time under steady load, measured end to end over HTTP.

Starts `distilserve serve` as a subprocess on 127.0.0.1 (fresh registry in a temp folder,
the model repository given by --repo), puts two versions live one after the other, drives
--users concurrent users on /v1/predict, and runs `distilserve rollback` --rollbacks times
(each rollback flips to the other version: the previous one becomes the rollback target).
For each rollback it reports, from every response's start time and X-Model-Version:
  cmd     seconds the CLI command took (process start, HTTP call, exit)
  switch  last old-version request start minus the command's return (<= 0: the switch was
          complete before the command returned)
  drain   last end of an old-version request started before the command, minus its return
  first   first new-version response end minus the command's start (the switch took effect
          by then; it includes starting the CLI's Python process)
  stale   old-version requests started after the command returned (must be 0)
and the failed requests (non-2xx or no response) over the whole run.

  .venv/bin/python loadtests/bench_rollback.py --repo /tmp/tiny_repo --users 60 --rollbacks 6

Drives the stack over HTTP and the CLI only: imports nothing from `serving`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import httpx


class Sample(NamedTuple):
    start: float
    end: float
    status: int  # 0: no HTTP response (connection error, timeout)
    version: str


class Rollback(NamedTuple):
    old: str
    new: str
    start: float
    returned: float
    rc: int


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def versions_on_disk(repo: Path, model: str) -> list[str]:
    folders = [p for p in (repo / model).iterdir() if p.name.isdigit() and (p / "card.json").is_file()]
    return sorted((p.name for p in folders), key=int)


def wait_until(check, timeout: float, what: str, proc: subprocess.Popen, log: Path) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"serve exited ({proc.returncode}) while waiting for {what}:\n{log.read_text()[-3000:]}")
        try:
            if check():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    sys.exit(f"timed out after {timeout:.0f} s waiting for {what}:\n{log.read_text()[-3000:]}")


def start_server(args: argparse.Namespace, work: Path, port: int, token: str) -> tuple[subprocess.Popen, Path]:
    # retain_versions high: a benchmark must never delete version folders of the repository.
    cfg = {"port": port, "model_repository": str(args.repo.resolve()), "registry": str(work / "registry.db"),
           "models": [args.model], "admin_token": token, "torch_threads": args.torch_threads,
           "retain_versions": 1000}
    (work / "serve.yaml").write_text(json.dumps(cfg))  # JSON is YAML
    log = work / "serve.log"
    cmd = [sys.executable, "-m", "distilserve.cli.main", "serve", "--config", str(work / "serve.yaml"), "--no-build"]
    # Own session: the benchmark can stop exactly this server (and only it) by its group id.
    proc = subprocess.Popen(cmd, cwd=work, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    return proc, log


def stop_server(proc: subprocess.Popen) -> None:
    """Ctrl-C first (serve shuts Serve, Ray and every tritonserver down), then harder."""
    for sig, wait in ((signal.SIGINT, 90), (signal.SIGTERM, 20), (signal.SIGKILL, 10)):
        if proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue


async def drive(url: str, token: str, model: str, users: int, first_old: str, first_new: str,
                rollbacks: int, interval: float, warmup: float) -> tuple[list[Sample], list[Rollback]]:
    samples: list[Sample] = []
    done = asyncio.Event()
    limits = httpx.Limits(max_connections=users, max_keepalive_connections=users)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:

        async def user(i: int) -> None:
            n = 0
            while not done.is_set():
                start = time.monotonic()
                n += 1
                try:
                    r = await client.post("/v1/predict", json={"model": model, "inputs": [f"user {i} message {n}"]})
                    samples.append(Sample(start, time.monotonic(), r.status_code, r.headers.get("x-model-version", "")))
                except httpx.HTTPError as e:
                    samples.append(Sample(start, time.monotonic(), 0, type(e).__name__))

        async def operator() -> list[Rollback]:
            done_rollbacks: list[Rollback] = []
            old, new = first_old, first_new
            await asyncio.sleep(warmup)
            for _ in range(rollbacks):
                start = time.monotonic()
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "distilserve.cli.main", "rollback", "--model", model, "--url", url,
                    "--reason", "bench_rollback", stdout=asyncio.subprocess.DEVNULL,
                    stderr=asyncio.subprocess.PIPE, env={**os.environ, "DISTILSERVE_ADMIN_TOKEN": token})
                _, err = await proc.communicate()
                returned = time.monotonic()
                if proc.returncode:
                    print(f"rollback failed: {err.decode().strip()}", file=sys.stderr)
                done_rollbacks.append(Rollback(old, new, start, returned, proc.returncode or 0))
                old, new = new, old
                await asyncio.sleep(interval)
            done.set()
            return done_rollbacks

        *_, result = await asyncio.gather(*(user(i) for i in range(users)), operator())
    return samples, result


def analyse(samples: list[Sample], rollbacks: list[Rollback]) -> list[dict]:
    """Per rollback, from client-side times only.

    A client's start time is not the moment the ingress routed the request: on a loaded
    machine a request can wait seconds before it reaches the ingress. A response from the old
    version that *ended* after the next rollback began may have been routed by that next
    rollback (which switches back to it), so such responses are left out of `switch_s` and
    `stale`; every other old-version response counts.
    """
    rows = []
    for k, rb in enumerate(rollbacks):
        lo = rollbacks[k - 1].returned if k else float("-inf")
        hi = rollbacks[k + 1].start if k + 1 < len(rollbacks) else float("inf")
        ok = [s for s in samples if 200 <= s.status < 300]
        old = [s for s in ok if s.version == rb.old and lo <= s.start and s.end < hi]
        in_flight = [s for s in ok if s.version == rb.old and lo <= s.start < rb.start]
        # Ends, not starts: a request routed to the new version may have been sent before the
        # command (queued on the way); its end bounds when the switch took effect.
        new = [s for s in ok if s.version == rb.new and lo <= s.start and rb.start <= s.end < hi]
        rows.append({
            "rollback": k + 1, "from": rb.old, "to": rb.new, "rc": rb.rc,
            "cmd_s": rb.returned - rb.start,
            "switch_s": max(s.start for s in old) - rb.returned if old else None,
            "drain_s": max(s.end for s in in_flight) - rb.returned if in_flight else None,
            "first_new_s": min(s.end for s in new) - rb.start if new else None,
            "stale": sum(s.start > rb.returned for s in old),
            "ambiguous": sum(s.version == rb.old and rb.returned < s.start < hi <= s.end for s in ok),
        })
    return rows


def _dist(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"min {min(values):+.3f}  median {statistics.median(values):+.3f}  max {max(values):+.3f}"


def report(samples: list[Sample], rows: list[dict], users: int) -> str:
    ok = [s for s in samples if 200 <= s.status < 300]
    failed = len(samples) - len(ok)
    span = max(s.end for s in samples) - min(s.start for s in samples)
    lat = sorted(s.end - s.start for s in ok)
    p = (lambda q: lat[min(len(lat) - 1, int(q * len(lat)))] * 1000) if lat else (lambda q: float("nan"))
    lines = [
        f"{len(samples)} requests from {users} users in {span:.1f} s ({len(samples) / span:.0f} req/s); "
        f"failed (non-2xx or no response): {failed}; latency p50 {p(0.5):.0f} ms, p99 {p(0.99):.0f} ms",
        "",
        "| # | from -> to | rc | cmd s | switch s | drain s | first new answer s | stale | ambiguous |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cells = [f"{r[k]:+.3f}" if isinstance(r[k], float) else "n/a" for k in ("cmd_s", "switch_s", "drain_s",
                                                                                 "first_new_s")]
        lines.append(f"| {r['rollback']} | v{r['from']} -> v{r['to']} | {r['rc']} | " + " | ".join(cells)
                     + f" | {r['stale']} | {r['ambiguous']} |")
    for key in ("cmd_s", "switch_s", "drain_s", "first_new_s"):
        lines.append(f"- {key}: {_dist([r[key] for r in rows if r[key] is not None])}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repo", type=Path, default=Path("model_repository"), help="model repository (>= 2 versions)")
    ap.add_argument("--model", default="sentiment")
    ap.add_argument("--users", type=int, default=60, help="concurrent users (default 60)")
    ap.add_argument("--rollbacks", type=int, default=6)
    ap.add_argument("--interval", type=float, default=4.0, help="seconds between rollbacks")
    ap.add_argument("--warmup", type=float, default=3.0, help="seconds of load before the first rollback")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None,
                    help="write the numbers and every request (start, end, status, version) as JSON here")
    ap.add_argument("--log", type=Path, default=None, help="copy the server's log here")
    args = ap.parse_args()
    if args.users < 1 or args.rollbacks < 1 or args.users > 1000 or args.rollbacks > 100:
        ap.error("--users must be in [1, 1000] and --rollbacks in [1, 100]")
    versions = versions_on_disk(args.repo, args.model)
    if len(versions) < 2:
        ap.error(f"{args.repo / args.model} has versions {versions}; a rollback needs two")
    old, new = versions[-2], versions[-1]

    token, port = secrets.token_urlsafe(16), free_port()
    url, auth = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    with tempfile.TemporaryDirectory(prefix="bench_rollback_") as tmp:
        work = Path(tmp)
        proc, log = start_server(args, work, port, token)
        try:
            wait_until(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, 300, "ready", proc, log)
            # A fresh registry sends everything to the lowest version; make `old` then `new` live
            # so that `new` is live and `old` is the rollback target, both deployed.
            admin = f"{url}/admin/models/{args.model}"
            for v in (old, new):
                httpx.post(f"{admin}/deploy", json={"version": v}, headers=auth, timeout=60).raise_for_status()
                wait_until(lambda v=v: httpx.get(f"{url}/v2/models/{args.model}/versions/{v}/ready").status_code
                           == 200, 300, f"version {v} ready", proc, log)
                httpx.post(f"{admin}/traffic", json={"weights": {v: 100}, "reason": "bench setup"}, headers=auth,
                           timeout=60).raise_for_status()
            target = httpx.get(admin, headers=auth, timeout=30).json()["rollback_target"]
            if target != old:
                sys.exit(f"expected rollback target {old}, the registry says {target}")
            print(f"serving {args.model} v{new} (rollback target v{old}) on {url}; "
                  f"{args.users} users, {args.rollbacks} rollbacks every {args.interval:g} s", flush=True)
            samples, rollbacks = asyncio.run(drive(url, token, args.model, args.users, new, old, args.rollbacks,
                                                   args.interval, args.warmup))
        finally:
            stop_server(proc)
            if args.log:
                args.log.write_text(log.read_text())
    rows = analyse(samples, rollbacks)
    print(report(samples, rows, args.users))
    if args.out:
        args.out.write_text(json.dumps({"users": args.users, "requests": len(samples),
                                        "failed": sum(not 200 <= s.status < 300 for s in samples),
                                        "rollbacks": rows, "commands": [rb._asdict() for rb in rollbacks],
                                        "samples": [s._asdict() for s in samples]}))
    failed = sum(not 200 <= s.status < 300 for s in samples) + sum(r["rc"] != 0 for r in rows)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
