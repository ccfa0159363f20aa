"""`distilserve up`'s record of what it started, and the daemon's command line (no processes started)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import psutil
import pytest

from distilserve.cli.admin import CliError
from distilserve.cli.up_cmd import _serve_argv, process_tree, read_state, same_process, write_state


def test_state_round_trips_and_a_broken_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / ".distilserve" / "up.json"
    assert read_state(path) is None
    write_state(path, {"pid": 1, "url": "http://127.0.0.1:8000"})
    assert read_state(path) == {"pid": 1, "url": "http://127.0.0.1:8000"}
    path.write_text("{not json")
    with pytest.raises(CliError, match="up.json is unreadable"):
        read_state(path)


def test_same_process_refuses_a_reused_pid() -> None:
    me = psutil.Process()
    assert same_process(os.getpid(), me.create_time()) is not None
    assert same_process(os.getpid(), me.create_time() - 100) is None  # same pid, another process
    assert same_process(2**22 + 12345, 0.0) is None  # no such pid


def test_process_tree_records_children_with_their_start_time() -> None:
    import subprocess

    child = subprocess.Popen(["sleep", "30"])
    try:
        tree = {p["pid"]: p for p in process_tree(os.getpid())}
        assert child.pid in tree and tree[child.pid]["name"] == "sleep"
        assert same_process(child.pid, tree[child.pid]["create_time"]) is not None
    finally:
        child.kill()
        child.wait()
    assert process_tree(2**22 + 12345) == []


def test_daemon_command_forwards_the_flags_with_absolute_paths(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(config=None, host=None, port=8123, model_repository=Path("repo"),
                              registry=Path("reg.db"), backend="torch")
    argv = _serve_argv(args)
    assert argv[:5] == [sys.executable, "-m", "distilserve.cli.main", "serve", "--no-build"]
    rest = dict(zip(argv[5::2], argv[6::2], strict=True))
    assert rest == {"--port": "8123", "--model-repository": str(tmp_path / "repo"),
                    "--registry": str(tmp_path / "reg.db"), "--backend": "torch"}
