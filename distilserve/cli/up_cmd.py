"""`distilserve up`: the stack of `distilserve serve` as a daemon; returns once it answers.

The daemon is `distilserve serve` in a session of its own (Ctrl-C in this terminal does not
reach it), logging to `.distilserve/up.log`. It owns a private loopback Ray; the controller
and ingress applications do the serving. `.distilserve/up.json` records what was started:
the daemon's pid and start time, the URL, the log, and the process tree once ready (Ray's
GCS, raylet, workers, every tritonserver), which `distilserve down` stops.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from distilserve.cli.admin import CliError
from distilserve.cli.serve_cmd import (
    add_stack_arguments,
    build_missing_default,
    check_grpc_port_free,
    load_config,
)

STATE_FILE = Path(".distilserve/up.json")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("up", help="start the serving stack as a daemon on 127.0.0.1; returns once ready")
    add_stack_arguments(p)
    p.add_argument("--no-build", action="store_true", help="do not train the default model when it is missing")
    p.add_argument("--quick-build", action="store_true", help="build a tiny demo model instead of the real teacher")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for readiness (default 600)")
    p.add_argument("--state-file", type=Path, default=STATE_FILE, help=f"where to record the daemon (default {STATE_FILE})")
    p.set_defaults(func=run)


def read_state(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        raise CliError(f"state file {path} is unreadable ({e}); remove it if nothing runs") from None


def write_state(path: Path, state: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def same_process(pid: int, create_time: float):  # noqa: ANN201 - psutil.Process | None
    """The process `pid` if it is still the one recorded (a reused pid is someone else's)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return proc if abs(proc.create_time() - create_time) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE else None
    except psutil.Error:
        return None


def process_tree(pid: int) -> list[dict]:
    import psutil

    try:
        procs = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for p in procs:
        try:
            out.append({"pid": p.pid, "create_time": p.create_time(), "name": p.name()})
        except psutil.Error:
            continue
    return out


def _ready(url: str, models: list[str]) -> bool:
    import httpx

    try:
        if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code != 200:
            return False
        return all(httpx.get(f"{url}/v2/models/{m}/ready", timeout=5).status_code == 200 for m in models)
    except httpx.HTTPError:
        return False


def _serve_argv(args: argparse.Namespace) -> list[str]:
    argv = [sys.executable, "-m", "distilserve.cli.main", "serve", "--no-build"]
    for flag, value in (("--config", args.config), ("--host", args.host), ("--port", args.port),
                        ("--grpc-port", getattr(args, "grpc_port", None)),
                        ("--model-repository", args.model_repository), ("--registry", args.registry),
                        ("--backend", args.backend)):
        if value is not None:
            argv += [flag, str(Path(value).resolve()) if isinstance(value, Path) else str(value)]
    return argv


def run(args: argparse.Namespace) -> int:
    state = read_state(args.state_file)
    if state and same_process(state["pid"], state["create_time"]):
        raise CliError(f"already up at {state['url']} (pid {state['pid']}); `distilserve down` stops it")
    cfg = load_config(args)
    from serving.http_server import PortInUseError, check_port_free

    try:
        check_port_free(cfg.host, cfg.port)
    except PortInUseError as e:
        raise CliError(str(e)) from None
    check_grpc_port_free(cfg)
    build_missing_default(cfg, args.no_build, args.quick_build)

    log_path = args.state_file.with_name("up.log").resolve()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "DISTILSERVE_ADMIN_TOKEN": cfg.admin_token.get_secret_value()}
    with open(log_path, "ab") as log:
        # A session of its own: the terminal's Ctrl-C and hang-up do not reach the daemon.
        proc = subprocess.Popen(_serve_argv(args), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                env=env, start_new_session=True)
    import psutil

    url = f"http://{_reachable_host(cfg.host)}:{cfg.port}"
    state = {"pid": proc.pid, "create_time": psutil.Process(proc.pid).create_time(), "url": url,
             "log": str(log_path), "models": cfg.models, "started_at": time.time(), "processes": []}
    write_state(args.state_file, state)
    deadline = time.monotonic() + args.timeout
    while not _ready(url, cfg.models):
        if proc.poll() is not None:
            args.state_file.unlink(missing_ok=True)
            tail = log_path.read_text(errors="replace")[-3000:]
            raise CliError(f"the daemon exited with status {proc.returncode}; end of {log_path}:\n{tail}")
        if time.monotonic() > deadline:
            raise CliError(f"not ready after {args.timeout:.0f} s (log: {log_path}); `distilserve down` stops it")
        time.sleep(0.5)
    state["processes"] = process_tree(proc.pid)
    write_state(args.state_file, state)
    print(f"distilserve: up on {url} (pid {proc.pid}, log {log_path}); `distilserve down` stops it", flush=True)
    return 0


def _reachable_host(host: str) -> str:
    """Where this machine reaches a server bound to `host`: loopback for a wildcard bind."""
    import ipaddress

    try:
        return "127.0.0.1" if not host or ipaddress.ip_address(host).is_unspecified else host
    except ValueError:  # a host name
        return host
