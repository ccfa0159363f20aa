"""The real tritonserver: start, load one version, infer, per-request errors, no orphans."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Collection
from pathlib import Path

import numpy as np
import psutil
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from serving.triton.reaper import group_shm_regions
from serving.triton.repo_view import make_view
from serving.triton.server import TritonError, TritonServer
from tests.helpers import listeners_off_loopback, wait_for
from tests.leaks import alive


@pytest.fixture(scope="module")
def server(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    view = make_view(tiny_repo, "sentiment", "1", tmp_path_factory.mktemp("view"))
    with TritonServer(view) as srv:
        srv.load("sentiment")
        yield srv


def _text_input(texts: list[bytes], mod=httpclient):
    arr = np.array(texts, dtype=np.object_).reshape(-1, 1)
    inp = mod.InferInput("TEXT", list(arr.shape), "BYTES")
    inp.set_data_from_numpy(arr)
    return inp


def test_serves_exactly_the_requested_version(server: TritonServer) -> None:
    assert server.model_ready("sentiment", "1")
    assert not server.model_ready("sentiment", "2")  # in the repository, but not in this view


def test_http_and_grpc_agree_and_shapes_match_config(server: TritonServer) -> None:
    texts = [b"I love this", b"this is awful", "caf\u00e9 \u2764".encode()]
    h = httpclient.InferenceServerClient(server.http_url).infer("sentiment", [_text_input(texts)])
    g = grpcclient.InferenceServerClient(server.grpc_url).infer("sentiment", [_text_input(texts, grpcclient)])
    probs = h.as_numpy("PROBABILITIES")
    assert probs.shape == (3, 3) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(probs, g.as_numpy("PROBABILITIES"), rtol=1e-5)
    assert [x.decode() for x in h.as_numpy("LABEL").reshape(-1)] == [
        x.decode() for x in g.as_numpy("LABEL").reshape(-1)
    ]
    assert {x.decode() for x in h.as_numpy("LABEL").reshape(-1)} <= {"negative", "neutral", "positive"}


def test_bad_request_gets_its_own_error_and_server_keeps_serving(server: TritonServer) -> None:
    client = httpclient.InferenceServerClient(server.http_url)
    with pytest.raises(InferenceServerException, match="TEXT\\[0\\] is not valid UTF-8"):
        client.infer("sentiment", [_text_input([b"\xff\xfe"])])
    ok = client.infer("sentiment", [_text_input([b"still fine"])])
    assert ok.as_numpy("PROBABILITIES").shape == (1, 3)


def test_listeners_are_loopback_only(server: TritonServer) -> None:
    assert server.proc is not None
    assert listeners_off_loopback({server.proc.pid}) == []



def test_a_replica_backend_with_two_instances_runs_two_and_says_so(tiny_repo: Path) -> None:
    """`model_instances` (ServeConfig) reaches Triton through the replica's view: two stubs, two
    instances in the config Triton loaded, and `instances` (published to the ingress, which paces
    one call per instance) says 2."""
    import asyncio

    from serving.backends import TritonBackend

    backend = TritonBackend(tiny_repo, "sentiment", "1", torch_threads=1, instances=2)
    try:
        assert backend.instances == 2
        config = asyncio.run(backend.model_config())
        assert [int(g.get("count", 1)) for g in config["instance_group"]] == [2]
        stubs = [c for c in psutil.Process(backend.server.proc.pid).children(recursive=True)
                 if "triton_python_backend_stub" in " ".join(c.cmdline())]
        assert len(stubs) == 2, [c.cmdline() for c in stubs]
        probs, labels = asyncio.run(backend.infer(["two instances", "one answer each"]))
        assert probs.shape == (2, 3) and len(labels) == 2
    finally:
        backend.close()

def test_triton_serves_the_traced_graph_as_transformers_would(tiny_repo: Path, server: TritonServer,
                                                                tmp_path: Path) -> None:
    """The export traced the version's forward; Triton's stub serves it (torch only, a faster
    start), and with TORCH_GRAPH off the stub builds the model with transformers: same answers."""
    import shutil

    from tests.helpers import new_model_dir

    assert (tiny_repo / "sentiment" / "1" / "model.torchscript.pt").is_file()
    assert "serving the traced graph" in server.log_path.read_text(errors="replace")
    repo = tmp_path / "repo"
    model_dir = new_model_dir(repo, "sentiment")
    shutil.copytree(tiny_repo / "sentiment" / "1", model_dir / "1", symlinks=True)
    config = model_dir / "config.pbtxt"
    old = 'key: "TORCH_GRAPH"\n  value: { string_value: "auto" }'
    assert old in config.read_text()
    config.write_text(config.read_text().replace(old, old.replace("auto", "off")))
    texts = [b"I love this", b"this is awful and long " * 20, b"meh"]
    with TritonServer(make_view(repo, "sentiment", "1", tmp_path / "view")) as plain:
        plain.load("sentiment", timeout=120)
        ref = httpclient.InferenceServerClient(plain.http_url).infer("sentiment", [_text_input(texts)])
        assert "serving the traced graph" not in plain.log_path.read_text(errors="replace")
    out = httpclient.InferenceServerClient(server.http_url).infer("sentiment", [_text_input(texts)])
    np.testing.assert_allclose(out.as_numpy("PROBABILITIES"), ref.as_numpy("PROBABILITIES"), atol=1e-5)
    assert list(out.as_numpy("LABEL").reshape(-1)) == list(ref.as_numpy("LABEL").reshape(-1))


def test_a_load_starts_one_python_stub_per_instance(tiny_repo: Path, tmp_path: Path) -> None:
    """Auto-complete is off (our configs are complete): no throwaway stub before the one that
    serves, which cost a replica's start 1.3 s."""
    with TritonServer(make_view(tiny_repo, "sentiment", "1", tmp_path / "view"), log_verbose=1) as srv:
        srv.load("sentiment", timeout=120)
        log = srv.log_path.read_text(errors="replace")
    assert '"auto-complete-config":"false"' in log.replace("\\", "")
    assert log.count("Starting Python backend stub") == 1, log.count("Starting Python backend stub")


def test_corrupt_weights_are_refused_with_a_clear_error(tiny_repo: Path, tmp_path: Path) -> None:
    import shutil

    from tests.helpers import new_model_dir

    repo = tmp_path / "repo"
    model_dir = new_model_dir(repo, "sentiment")
    shutil.copytree(tiny_repo / "sentiment" / "1", model_dir / "1", symlinks=True)
    (model_dir / "1" / "model.safetensors").write_bytes(b"not a safetensors file")
    view = make_view(repo, "sentiment", "1", tmp_path / "view")
    with TritonServer(view) as srv, pytest.raises(TritonError, match="loading model 'sentiment' failed"):
        srv.load("sentiment", timeout=120)


def test_missing_version_is_refused_before_starting(tiny_repo: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="version '9' of model 'sentiment' not found"):
        make_view(tiny_repo, "sentiment", "9", tmp_path)


def test_server_dies_with_its_owner_even_on_sigkill(tiny_repo: Path, tmp_path: Path) -> None:
    """The owner process is SIGKILLed: no chance to clean up, yet Triton must not survive it."""
    script = textwrap.dedent(
        f"""
        import sys, time
        from pathlib import Path
        from serving.triton.server import TritonServer
        srv = TritonServer(Path({str(tiny_repo)!r})).start()
        srv.load("sentiment")  # Python-backend stubs must die with it too
        print(srv.proc.pid, flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    try:
        line = owner.stdout.readline()
        triton_pid = int(line.strip())
        assert alive(triton_pid)
        stubs = {c.pid for c in psutil.Process(triton_pid).children(recursive=True)}
        assert stubs, "loading a Python-backend model starts stub processes"
        _kill_owner_then_wait_for_all_gone(owner, triton_pid, stubs)
    finally:
        if owner.poll() is None:
            owner.kill()


def _kill_owner_then_wait_for_all_gone(owner: subprocess.Popen, triton_pid: int, stubs: Collection[int]) -> None:
    """...and for the shared-memory regions the group mapped to be removed (by the watchdog, or by a
    stub that saw its server die): a killed server leaves them in /dev/shm."""
    regions = group_shm_regions(triton_pid)
    assert regions, "a server with a Python-backend stub maps at least one region"
    owner.send_signal(signal.SIGKILL)
    owner.wait(10)
    wait_for(lambda: not alive(triton_pid), 15, f"tritonserver {triton_pid} to die with its owner")
    wait_for(lambda: not any(alive(p) for p in stubs), 15, f"stubs {stubs} to be gone once their owner is")
    wait_for(lambda: not any(Path(r).exists() for r in regions), 10, f"regions {sorted(regions)} to be removed")


def test_stubs_of_a_model_still_loading_die_with_a_killed_owner(tiny_repo: Path) -> None:
    """The owner is SIGKILLed just after Triton forked a stub, before the model finished loading.
    Such a stub never learns that its server died (it waits for an `initialize` message forever):
    without serving/triton/reaper.py it outlived the test, reparented to init."""
    script = textwrap.dedent(
        f"""
        import sys, threading, time
        import psutil
        from pathlib import Path
        from serving.triton.server import TritonServer
        srv = TritonServer(Path({str(tiny_repo)!r})).start()
        threading.Thread(target=srv.load, args=("sentiment",), daemon=True).start()
        server = psutil.Process(srv.proc.pid)

        def stubs():
            found = []
            for child in server.children(recursive=True):
                try:
                    if "triton_python_backend_stub" in " ".join(child.cmdline()):
                        found.append(child.pid)
                except psutil.NoSuchProcess:
                    pass
            return found

        while not (pids := stubs()):
            time.sleep(0.005)
        time.sleep(0.1)  # the stub is up and waiting for its server; the model is not loaded yet
        print(srv.proc.pid, *(stubs() or pids), flush=True)
        time.sleep(600)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).resolve().parents[2])
    stubs: list[int] = []
    try:
        triton_pid, *stubs = (int(p) for p in owner.stdout.readline().split())
        assert stubs
        _kill_owner_then_wait_for_all_gone(owner, triton_pid, stubs)
    finally:
        if owner.poll() is None:
            owner.kill()
        for pid in stubs:  # never leave one behind, even when the assertion failed
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.mark.parametrize("killed", ["by_stop", "group_from_outside", "server_from_outside"])
def test_a_killed_server_leaves_no_shared_memory(tiny_repo: Path, tmp_path: Path, killed: str) -> None:
    """by_stop: `stop(grace=0)` (a finished batch job's Triton) kills the server and its stub without
    their graceful exit, which is what removes the Python backend's regions in /dev/shm.
    group_from_outside: the server and its stub killed before `stop` can ask which regions they map;
    `stop` removes those noted after the load.
    server_from_outside: the server alone killed (the OOM killer, a crash, the fault tests' SIGKILL):
    its stub removes them as it exits, before any `stop`."""
    srv = TritonServer(make_view(tiny_repo, "sentiment", "1", tmp_path / "view")).start()
    try:
        srv.load("sentiment", timeout=120)
        assert srv.proc is not None
        pid = srv.proc.pid
        regions = group_shm_regions(pid)
        assert regions, "a loaded Python-backend model maps at least one region"
        assert all(Path(r).exists() for r in regions)
        if killed == "group_from_outside":
            os.killpg(pid, signal.SIGKILL)  # the server and its stub, with no chance to clean up
            wait_for(lambda: not alive(pid) and not group_shm_regions(pid), 30, "the killed group to be gone")
            assert all(Path(r).exists() for r in regions), "a killed server leaves its regions behind"
            assert not srv.alive()
        elif killed == "server_from_outside":
            stubs = [c.pid for c in psutil.Process(pid).children(recursive=True)]
            os.kill(pid, signal.SIGKILL)
            wait_for(lambda: not any(alive(p) for p in stubs), 30, "the stub to see its server gone")
            assert not [r for r in regions if Path(r).exists()], "the stub removes what its server left"
    finally:
        srv.stop(grace=0)
    wait_for(lambda: not alive(pid), 30, "the killed server to be gone")
    assert not [r for r in regions if Path(r).exists()]
