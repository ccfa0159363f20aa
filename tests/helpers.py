"""Shared test helpers: tiny model repositories built in seconds, free ports, waiting."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.ports import free_port  # noqa: F401 - tests import it from here

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = REPO_ROOT / "model_repository" / "sentiment"

# A model whose model.py fails on purpose for texts containing "boom": the stack must turn
# that into a 500 for that request only and keep serving. Test fixture, not product code.
FAULTY_MODEL_PY = '''
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        pass

    def execute(self, requests):
        out = []
        for r in requests:
            texts = [t.decode() for t in pb_utils.get_input_tensor_by_name(r, "TEXT").as_numpy().reshape(-1)]
            if any("boom" in t for t in texts):
                out.append(pb_utils.InferenceResponse(error=pb_utils.TritonError("exploded on purpose")))
                continue
            probs = np.tile(np.array([[0.2, 0.3, 0.5]], dtype=np.float32), (len(texts), 1))
            labels = np.array([[b"positive"] for _ in texts], dtype=np.object_)
            out.append(pb_utils.InferenceResponse(output_tensors=[
                pb_utils.Tensor("PROBABILITIES", probs), pb_utils.Tensor("LABEL", labels)]))
        return out
'''


def new_model_dir(repo: Path, model: str = "sentiment") -> Path:
    """`repo/model/` with the real config.pbtxt (renamed) and the generic model.py."""
    model_dir = repo / model
    model_dir.mkdir(parents=True, exist_ok=True)
    text = (TEMPLATE / "config.pbtxt").read_text().replace('name: "sentiment"', f'name: "{model}"')
    (model_dir / "config.pbtxt").write_text(text)
    shutil.copy(TEMPLATE / "model.py", model_dir / "model.py")
    return model_dir


def build_tiny_repo(repo: Path, versions: int = 1, model: str = "sentiment") -> Path:
    """A real model repository holding `versions` quick teachers (tiny random BERTs, trained briefly)."""
    from distill.teacher import TeacherConfig, run_teacher

    new_model_dir(repo, model)
    for seed in range(versions):
        run_teacher(TeacherConfig.quick_defaults(seed=seed), repo, model)
    return repo


def add_faulty_model(repo: Path, model: str = "faulty") -> None:
    """A model whose version 1 fails for any text containing 'boom' (see FAULTY_MODEL_PY)."""
    import json

    model_dir = new_model_dir(repo, model)
    (model_dir / "model.py").write_text(FAULTY_MODEL_PY)
    v1 = model_dir / "1"
    v1.mkdir()
    (v1 / "model.py").symlink_to("../model.py")
    src_card = json.loads(next((repo / "sentiment").glob("1/card.json")).read_text())
    src_card.update(model=model, version="1")
    (v1 / "card.json").write_text(json.dumps(src_card))


def load_module(path: Path, name: str):  # noqa: ANN201 - a module
    """Import a file (e.g. a repository's model.py) as a plain module under `name`."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def copy_version(src_repo: Path, dst_repo: Path, version: str, model: str = "sentiment") -> Path:
    """A fresh repository `dst_repo` whose `model` holds a copy of `src_repo`'s `version`."""
    model_dir = new_model_dir(dst_repo, model)
    shutil.copytree(src_repo / model / version, model_dir / version, symlinks=True)
    return model_dir / version




def wait_for(check: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll `check` until it is true; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def delete_serve_apps(timeout: float = 120.0) -> None:
    """Delete every Serve application and wait until all are gone: the controller's first (it
    would deploy versions again), then the others at once, so their replicas stop (each
    ModelVersion stops its Triton) side by side, not one application after another."""
    from ray import serve

    from distilserve.core.names import CONTROLLER_APP
    from serving import raycompat

    names = set(serve.status().applications)
    if CONTROLLER_APP in names:
        serve.delete(CONTROLLER_APP)
        names.discard(CONTROLLER_APP)
    for name in names:
        raycompat.delete_app_nowait(name)
    wait_for(lambda: not names & set(serve.status().applications), timeout, f"applications {sorted(names)} deleted")


@contextmanager
def one_replica_stack(repo: Path, registry_dir: Path, admin_token: str, ready_path: str, ready_timeout: float,
                      **settings: Any) -> Iterator[str]:
    """`sentiment` served in this process's Ray (`Runner.start`, registry mode) with one fixed,
    light replica and any other ServeConfig `settings`; yields the ingress URL once `ready_path`
    answers 200, and deletes the stack's applications afterwards."""
    import httpx

    from serving.config import AutoscalingSettings, ServeConfig
    from serving.runner import Runner

    cfg = ServeConfig(
        port=free_port(), model_repository=repo, registry=registry_dir / "registry.db", models=["sentiment"],
        admin_token=admin_token, torch_threads=1, replica_cpus=0.1,
        autoscaling=AutoscalingSettings(min_replicas=1, max_replicas=1), **settings,
    )
    Runner(cfg).start()
    url = f"http://127.0.0.1:{cfg.port}"
    wait_for(lambda: httpx.get(f"{url}{ready_path}").status_code == 200, ready_timeout, f"{ready_path} answering 200")
    try:
        yield url
    finally:
        delete_serve_apps()


# The logs of the `distilserve serve` processes running now: a failed test's report shows them.
SERVE_LOGS: set[Path] = set()


@contextmanager
def serve_process(args: list[str], cwd: Path, env: dict[str, str], log_path: Path, timeout: float = 420,
                  **popen: Any) -> Iterator[tuple[subprocess.Popen, str]]:
    """`distilserve serve ARGS --port P` as a user starts it, once ready: (process, base URL).

    Its output goes to `log_path` (a pipe nobody reads would fill and block); the tail is the
    failure message when it never gets ready. Stopped with Ctrl-C (SIGINT), killed after 90 s.
    """
    port = free_port()
    SERVE_LOGS.add(log_path)
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "distilserve.cli.main", "serve", *args, "--port", str(port),
                                 "--grpc-port", str(free_port())],  # never the default 8001 another stack holds
                                cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, text=True, **popen)
        url = f"http://127.0.0.1:{port}"
        try:
            import httpx

            try:
                wait_for(lambda: proc.poll() is None and httpx.get(f"{url}/v2/health/ready").status_code == 200,
                         timeout, "distilserve serve to be ready")
            except AssertionError:
                raise AssertionError(log_path.read_text()[-3000:]) from None
            yield proc, url
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(90)
                except subprocess.TimeoutExpired:
                    proc.kill()
            SERVE_LOGS.discard(log_path)


def descendants(pid: int) -> set[int]:
    """`pid` and every process below it (Ray's gcs/raylet/workers descend from the driver)."""
    import psutil

    try:
        proc = psutil.Process(pid)
        return {pid} | {c.pid for c in proc.children(recursive=True)}
    except psutil.NoSuchProcess:
        return set()


def listeners_off_loopback(pids: set[int] | None = None) -> list[str]:
    """`ss -ltnp` lines of listeners on an address other than loopback (optionally only for pids)."""
    import subprocess

    out = subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True, check=True).stdout
    bad = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 4:
            continue
        local = parts[3]
        host = local.rsplit(":", 1)[0].strip("[]").removeprefix("::ffff:")
        if host.startswith("127.") or host in ("::1", "localhost"):
            continue
        if pids is not None and not any(f"pid={p}," in line for p in pids):
            continue
        bad.append(line)
    return bad
