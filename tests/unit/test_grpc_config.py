"""`grpc_port` in ServeConfig and the `--grpc-port` flag of `serve` and `up`."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from pydantic import ValidationError

from distilserve.cli import up_cmd
from distilserve.cli.main import build_parser
from serving.config import ServeConfig


@pytest.mark.parametrize("value,expected", [
    (None, None), (0, 0), (9001, 9001),
], ids=["null-off", "zero-off", "port"])
def test_grpc_port_values(value: int | None, expected: int | None) -> None:
    assert ServeConfig(grpc_port=value).grpc_port == expected


def test_grpc_port_default_and_bad_values() -> None:
    assert ServeConfig().grpc_port == 8001
    for bad in (-1, 65536, "x"):
        with pytest.raises(ValidationError, match="grpc_port"):
            ServeConfig(grpc_port=bad)


@pytest.mark.parametrize("command", ["serve", "up"])
def test_the_flag_reaches_the_config(command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from distilserve.cli.serve_cmd import load_config

    monkeypatch.chdir(tmp_path)  # load_config keeps a generated admin token under .distilserve/
    monkeypatch.delenv("DISTILSERVE_ADMIN_TOKEN", raising=False)

    args = build_parser().parse_args([command, "--grpc-port", "9123"])
    assert load_config(args).grpc_port == 9123


def test_up_forwards_the_flag_to_its_daemon() -> None:
    args = argparse.Namespace(config=None, host=None, port=None, grpc_port=0, model_repository=Path("repo"),
                              registry=None, backend=None)
    argv = up_cmd._serve_argv(args)
    assert argv[argv.index("--grpc-port") + 1] == "0"


def test_a_taken_grpc_port_is_refused_before_start() -> None:
    import socket

    from distilserve.cli.admin import CliError
    from distilserve.cli.serve_cmd import check_grpc_port_free

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(CliError, match=f"grpc_port: 127.0.0.1:{port} is already in use.*--grpc-port"):
            check_grpc_port_free(ServeConfig(grpc_port=port))
    check_grpc_port_free(ServeConfig(grpc_port=0))  # off: nothing to check
