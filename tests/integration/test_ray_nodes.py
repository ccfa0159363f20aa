"""tests/ray_nodes.py's head node with real `ray start`: it comes up, and one that does not come
up in time is stopped with everything it started and tried again (Ray's own 30 s wait for its
raylet runs out on a loaded machine; the multi-node tests depend on this retry)."""

from __future__ import annotations

import shutil
import sys
import tempfile

import psutil
import pytest

from tests import ray_nodes
from tests.helpers import free_port

pytestmark = pytest.mark.skipif(not ray_nodes.RAY_CLI.is_file(),
                                reason=f"the `ray` CLI is not installed next to {sys.executable}")


@pytest.fixture
def temp_dir():
    d = tempfile.mkdtemp(prefix="rn", dir="/tmp")  # short: Ray's socket paths
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _running_in(temp_dir: str) -> list[str]:
    """Processes whose command line names `temp_dir` (a node's GCS, raylet, ...)."""
    found = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        if p.info["status"] != psutil.STATUS_ZOMBIE and temp_dir in " ".join(p.info["cmdline"] or []):
            found.append(f"{p.info['pid']}: {' '.join(p.info['cmdline'])[:200]}")
    return found


def test_head_comes_up_and_stops_without_leftovers(temp_dir: str) -> None:
    proc = ray_nodes.start_head(temp_dir, free_port(), num_cpus=0, resources={"head": 1})
    assert proc.poll() is None
    assert _running_in(temp_dir), "the head's own processes run in its temp dir"
    assert ray_nodes.stop([proc], set()) == []
    assert _running_in(temp_dir) == []


def test_a_head_not_up_in_time_is_stopped_and_tried_again(temp_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # Never "up": each attempt runs until the timeout, long enough to have started its GCS and
    # raylet, which the retry must stop.
    monkeypatch.setattr(ray_nodes, "HEAD_UP", "a line ray start never prints")
    monkeypatch.setattr(ray_nodes, "HEAD_TIMEOUT_S", 12.0)
    monkeypatch.setattr(ray_nodes, "NODE_ATTEMPTS", 2)
    tries, stopped = [], []
    once, stop = ray_nodes._start_head_once, ray_nodes.stop

    def counted(*args, **kwargs):
        proc, up = once(*args, **kwargs)
        tries.append(proc)
        return proc, up

    def recorded(procs, extra):
        stopped.append({psutil.Process(pid).name() for pid in extra if psutil.pid_exists(pid)})
        return stop(procs, extra)

    monkeypatch.setattr(ray_nodes, "_start_head_once", counted)
    monkeypatch.setattr(ray_nodes, "stop", recorded)
    with pytest.raises(SystemExit, match="failed 2 times"):
        ray_nodes.start_head(temp_dir, free_port(), num_cpus=0, resources={})
    assert len(tries) == 2 and all(p.poll() is not None for p in tries)
    assert all("gcs_server" in names for names in stopped), stopped
    assert _running_in(temp_dir) == [], "a failed attempt leaves nothing running"
