"""`distilserve down`: stop what `distilserve up` started, and nothing else.

The daemon gets SIGTERM and shuts Serve and its private Ray down (every Triton dies with its
replica). Whatever of its process tree (taken now and recorded at `up`) is still alive after
that is killed: no orphaned tritonserver, raylet, gcs_server or Python stub stays behind.
"""

from __future__ import annotations

import argparse
import signal
from pathlib import Path

from distilserve.cli.up_cmd import STATE_FILE, process_tree, read_state, same_process


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("down", help="stop the stack `distilserve up` started")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds for a clean shutdown before killing")
    p.add_argument("--state-file", type=Path, default=STATE_FILE, help=f"the record `up` wrote (default {STATE_FILE})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import psutil

    state = read_state(args.state_file)
    if state is None:
        print(f"distilserve: nothing to stop ({args.state_file} not found)")
        return 0
    daemon = same_process(state["pid"], state["create_time"])
    recorded = state.get("processes", []) + (process_tree(daemon.pid) if daemon else [])
    tree = {p.pid: p for p in (same_process(r["pid"], r["create_time"]) for r in recorded) if p is not None}
    if daemon is not None:
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(args.timeout)
        except psutil.TimeoutExpired:
            print(f"distilserve: pid {daemon.pid} did not stop within {args.timeout:.0f} s; killing it")
            daemon.kill()
            daemon.wait(10)
    _, alive = psutil.wait_procs(list(tree.values()), timeout=15)
    for proc in alive:
        try:
            print(f"distilserve: killing leftover {proc.name()} (pid {proc.pid})")
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(alive, timeout=10)
    args.state_file.unlink(missing_ok=True)
    print(f"distilserve: stopped {state['url']}")
    return 0
