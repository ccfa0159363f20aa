"""The CLI stays light: `distilserve --help` and every admin command import no torch,
transformers, datasets, Ray or FastAPI (each took 7-10 s when they did; the API call itself
takes milliseconds). Checked on the modules each process imported (`-X importtime`), not on time.

Admin commands run for real against a small local HTTP server that records what they asked,
so a command that changes state is also seen to go through the admin API.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from serving.registry import Registry
from tests.helpers import REPO_ROOT

HEAVY = frozenset({"torch", "transformers", "datasets", "ray", "fastapi"})

# Every key any admin command reads from an answer, so each runs to its end.
ANSWER = {
    "model": "sentiment", "traffic": {"1": 100.0}, "previous": {"1": 90.0, "2": 10.0}, "action": {"reason": "ok"},
    "rollout_id": "r1",
    "rollout": {"policy": {"strategy": "canary"},
                "status": {"phase": "progressing", "traffic": {"1": 99.0, "2": 1.0},
                           "stable_version": "1", "candidate_version": "2"}},
    "keep": 1, "dry_run": False, "pruned": ["3"], "kept": ["1", "2"], "roles": {"1": ["rollback target"]},
}


class _Admin(BaseHTTPRequestHandler):
    seen: list[tuple[str, str, str]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        self.seen.append((self.command, self.path, self.headers.get("authorization", "")))
        self.rfile.read(length)
        data = json.dumps(ANSWER).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = _answer

    def log_message(self, *args: object) -> None:  # quiet
        pass


@pytest.fixture(scope="module")
def admin_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Admin)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def imported(*args: str, cwd: Path = REPO_ROOT) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run `distilserve ARGS`; its result and the top-level packages it imported."""
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "distilserve.cli.main", *args],
                         capture_output=True, text=True, timeout=120, cwd=cwd)
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0]
               for line in out.stderr.splitlines() if line.startswith("import time:") and "|" in line}
    assert "distilserve" in modules, out.stderr[-2000:]  # the parse above read real importtime lines
    return out, modules


HELP = [
    pytest.param([], id="distilserve"),
    *(pytest.param([*cmd, "--help"], id=" ".join(cmd)) for cmd in (
        ["traffic"], ["rollback"], ["status"], ["rollout"], ["rollout", "canary"], ["rollout", "status"],
        ["rollout", "promote"], ["versions"], ["versions", "prune"], ["versions", "list"], ["history"],
    )),
]


@pytest.mark.parametrize("args", HELP)
def test_help_imports_nothing_heavy(args: list[str]) -> None:
    out, modules = imported(*(args or ["--help"]))
    assert out.returncode == 0 and "usage:" in out.stdout, out.stderr[-2000:]
    assert not modules & HEAVY, f"distilserve {' '.join(args)} imported {sorted(modules & HEAVY)}"


# (command, the admin API call it must make)
ADMIN = [
    (["traffic", "--set", "1=90", "2=10"], ("POST", "/admin/models/sentiment/traffic")),
    (["rollback"], ("POST", "/admin/models/sentiment/rollback")),
    (["status"], ("GET", "/admin/models/sentiment")),
    (["rollout", "canary", "--version", "2", "--max-step", "900"], ("POST", "/admin/models/sentiment/rollouts")),
    (["rollout", "status", "--json"], ("GET", "/admin/models/sentiment/rollouts/status")),
    *(([ "rollout", c], ("POST", f"/admin/models/sentiment/rollouts/{c}"))
      for c in ("promote", "rollback", "pause", "resume", "abort", "promote-winner")),
    (["versions", "prune", "sentiment", "--keep", "1"], ("POST", "/admin/models/sentiment/versions/prune")),
    (["versions", "prune", "--keep", "1", "--dry-run"], ("POST", "/admin/models/sentiment/versions/prune")),
]


@pytest.mark.parametrize(("args", "call"), [pytest.param(a, c, id=" ".join(a[:2])) for a, c in ADMIN])
def test_admin_commands_call_the_api_and_import_nothing_heavy(
    admin_url: str, args: list[str], call: tuple[str, str]
) -> None:
    before = len(_Admin.seen)
    out, modules = imported(*args, "--url", admin_url, "--token", "t0k")
    assert out.returncode == 0, out.stderr[-2000:]
    assert not modules & HEAVY, f"distilserve {' '.join(args)} imported {sorted(modules & HEAVY)}"
    assert (*call, "Bearer t0k") in _Admin.seen[before:]


def test_prune_output_comes_from_the_server(admin_url: str) -> None:
    out, _ = imported("versions", "prune", "--keep", "1", "--url", admin_url, "--token", "t0k")
    assert "sentiment: pruned 3 (keep newest 1)" in out.stdout and "rollback target" in out.stdout
    bad, _ = imported("versions", "prune", "--keep", "0", "--url", admin_url, "--token", "t0k")
    assert bad.returncode == 2 and "--keep must be >= 1" in bad.stderr


def test_read_only_commands_read_the_registry_without_heavy_imports(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    with Registry(db) as reg:
        reg.record_event("sentiment", "note", "hello", {})
    out, modules = imported("history", "--model", "sentiment", "--registry", str(db), "--events")
    assert out.returncode == 0 and "hello" in out.stdout, out.stderr[-2000:]
    assert not modules & HEAVY, sorted(modules & HEAVY)
    out, modules = imported("versions", "list", "sentiment", "--registry", str(db))
    assert out.returncode == 2 and "no versions" in out.stderr and not modules & HEAVY
    missing, _ = imported("versions", "list", "--registry", str(tmp_path / "nope.db"))
    assert missing.returncode == 2 and "no registry" in missing.stderr
    assert not (tmp_path / "nope.db").exists(), "a read must not create the registry"
