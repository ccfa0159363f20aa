"""The CLI as a user runs it: build a model, serve it, query it, stop it with Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
import pytest

from tests.helpers import (
    REPO_ROOT,
    descendants,
    listeners_off_loopback,
    new_model_dir,
    serve_process,
)

CLI = [sys.executable, "-m", "distilserve.cli.main"]


def _tritons(root: int) -> set[int]:
    """The tritonservers below `root` (another test lane's are not this test's)."""
    found = set()
    for pid in descendants(root) - {root}:
        try:
            if psutil.Process(pid).name() == "tritonserver":
                found.add(pid)
        except psutil.NoSuchProcess:
            continue
    return found


def test_distill_teacher_quick_exports_a_loadable_version(tmp_path: Path) -> None:
    new_model_dir(tmp_path, "sentiment")
    out = subprocess.run([*CLI, "distill", "teacher", "--quick", "--repo", str(tmp_path)],
                         capture_output=True, text=True, timeout=300, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "exported" in out.stdout
    card = json.loads((tmp_path / "sentiment" / "1" / "card.json").read_text())
    assert card["kind"] == "teacher" and card["version"] == "1"
    assert {s["batch_size"] for s in card["latency"]} == {1, 32}
    assert card["lineage"]["data_fingerprint"].startswith("sha256:")
    assert (tmp_path / "sentiment" / "1" / "model.safetensors").is_file()
    assert os.readlink(tmp_path / "sentiment" / "1" / "model.py") == "../model.py"


@pytest.fixture
def served(tmp_path: Path):
    """`distilserve serve --quick-build` on an empty model: builds version 1, then serves it.

    Started with SIGINT ignored, as a background job (`make test &`, a CI script) passes it on:
    the test then holds whether or not the suite itself runs in the background."""
    new_model_dir(tmp_path / "repo", "sentiment")
    env = {**os.environ, "DISTILSERVE_ADMIN_TOKEN": "e2e-token"}
    args = ["--quick-build", "--model-repository", str(tmp_path / "repo"), "--registry", str(tmp_path / "registry.db")]
    # As from a background job or a script: SIGINT inherited as ignored. Ctrl-C must still stop it.
    with serve_process(args, tmp_path, env, tmp_path / "serve.log",
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) as (proc, url):
        yield {"proc": proc, "url": url}


def test_serve_predict_tritonclient_and_ctrl_c(served, tmp_path: Path) -> None:
    import tritonclient.http as httpclient

    url, proc = served["url"], served["proc"]
    r = httpx.post(f"{url}/v1/predict", json={"model": "sentiment", "inputs": ["I love this"]}, timeout=30)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == "1"
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    arr = np.array([b"I love this"], dtype=np.object_).reshape(1, 1)
    inp = httpclient.InferInput("TEXT", [1, 1], "BYTES")
    inp.set_data_from_numpy(arr)
    label = client.infer("sentiment", [inp]).as_numpy("LABEL").reshape(-1)[0].decode()
    assert label == body["predictions"][0]["label"]

    assert listeners_off_loopback(descendants(proc.pid)) == []
    started = _tritons(proc.pid)
    assert started, "serving must run a tritonserver"

    proc.send_signal(signal.SIGINT)  # Ctrl-C
    assert proc.wait(90) == 0
    # In the foreground, `serve` follows the controller's log (its decisions, not its access lines).
    output = (tmp_path / "serve.log").read_text()
    assert "controller| " in output and "controller leading" in output, output[-3000:]
    assert " -- CALL " not in output, output[-3000:]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"
                                             for p in started):
        time.sleep(0.5)
    alive = [p for p in started if psutil.pid_exists(p) and psutil.Process(p).status() != "zombie"]
    assert not alive, f"tritonserver processes survived Ctrl-C: {alive}"


def test_readme_commands_exist_as_make_targets() -> None:
    readme = (REPO_ROOT / "README.md").read_text()
    makefile = (REPO_ROOT / "Makefile").read_text()
    for target in ("serve", "test"):
        assert f"make {target}" in readme
        assert f"\n{target}:" in makefile
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
