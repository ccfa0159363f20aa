"""`distilserve up` returns once the stack answers, `down` leaves no process of it behind, and
the port is free for the next `up` right after `down`, though the server's closed connections
still sit in TIME_WAIT on it.

Until 2026-12-02 the test ran a second `up` on the same port (about 55 s idle, 80 s in CI). What
that second start checked beyond the first is `up`'s port probe under TIME_WAIT, which is checked
here directly with the same probe (`check_port_free`), and in tests/unit/test_port_probe.py
together with the listener's own bind."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import psutil

from serving.http_server import check_port_free
from tests.helpers import REPO_ROOT, free_port, listeners_off_loopback, new_model_dir
from tests.ports import time_wait_on

CLI = [sys.executable, "-m", "distilserve.cli.main"]


def _cli(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    out = subprocess.run([*CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                         env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert out.returncode == 0, f"{args[0]} failed:\n{out.stdout[-2000:]}\n{out.stderr[-3000:]}"
    return out


def _alive(records: list[dict]) -> list[str]:
    alive = []
    for r in records:
        try:
            p = psutil.Process(r["pid"])
            if abs(p.create_time() - r["create_time"]) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                alive.append(f"{p.name()}({p.pid})")
        except psutil.Error:
            continue
    return alive


def test_up_down_and_the_port_is_free_again(tmp_path: Path) -> None:
    new_model_dir(tmp_path / "repo", "sentiment")
    port = free_port()
    flags = ["--port", str(port), "--grpc-port", "0", "--model-repository", str(tmp_path / "repo"), "--registry", str(tmp_path / "reg.db")]
    _cli(["up", *flags, "--quick-build", "--timeout", "480"], tmp_path, 900)
    state = json.loads((tmp_path / ".distilserve" / "up.json").read_text())
    url = state["url"]
    try:
        # Several clients, each connection closed by the server after its answer (TIME_WAIT on our port).
        for i in range(5):
            r = httpx.post(f"{url}/v1/predict", json={"model": "sentiment", "inputs": [f"good day {i}"]},
                           headers={"Connection": "close"}, timeout=60)
            assert r.status_code == 200, r.text
        names = {r["name"] for r in state["processes"]}
        assert {"tritonserver", "raylet", "gcs_server"} <= names, names
        tree = {r["pid"] for r in state["processes"]} | {state["pid"]}
        assert listeners_off_loopback(tree) == []
    finally:
        _cli(["down"], tmp_path, 180)
    left = _alive([{"pid": state["pid"], "create_time": state["create_time"]}, *state["processes"]])
    assert left == [], f"processes of `up` survived `down`: {left}"
    assert not (tmp_path / ".distilserve" / "up.json").exists()
    # The server closed each connection first, so its side lingers in TIME_WAIT for about a minute;
    # the probe the next `up` (or `serve`) runs must find the port free all the same.
    assert time_wait_on(port) > 0, "the test left no TIME_WAIT socket on the port: it checks nothing"
    check_port_free("127.0.0.1", port)


def test_down_without_up_is_a_no_op(tmp_path: Path) -> None:
    out = _cli(["down"], tmp_path, 60)
    assert "nothing to stop" in out.stdout
