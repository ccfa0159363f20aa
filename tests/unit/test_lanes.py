"""tests/lanes.py (the suite as two pytest processes) and the lane filter of tests/leaks.py."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests import leaks
from tests.lanes import LANE_B, exit_status, split

INTEGRATION = sorted(p.name for p in (Path(__file__).resolve().parents[1] / "integration").glob("test_*.py"))


def test_every_integration_module_runs_in_exactly_one_lane() -> None:
    lanes = split(INTEGRATION)
    a = [Path(p).name for p in lanes["a"]]
    b = [Path(p).name for p in lanes["b"] if p.startswith("tests/integration/")]
    assert sorted(a + b) == INTEGRATION
    assert not set(a) & set(b)
    assert lanes["b"][:2] == ["tests/unit", "tests/e2e"]
    assert "test_stack.py" in a and "test_multinode.py" in b


def test_a_lane_b_module_that_does_not_exist_is_an_error() -> None:
    with pytest.raises(ValueError, match="test_multinode.py"):
        split([m for m in INTEGRATION if m != "test_multinode.py"])
    assert set(LANE_B) <= set(INTEGRATION)


@pytest.mark.parametrize(("codes", "status"), [
    ({"a": 0, "b": 0}, 0),
    ({"a": 1, "b": 0}, 1),
    ({"a": 0, "b": 2}, 2),
    ({"b": 5, "a": 1}, 1),  # lane order, not dict order
    ({"a": 0}, 0),
])
def test_exit_status(codes: dict[str, int], status: int) -> None:
    assert exit_status(codes) == status


@pytest.fixture
def fake_orphan_stub():
    """A process that looks like a Python-backend stub whose tritonserver is gone (its parent is
    this test), started with lane "x"."""
    proc = subprocess.Popen(["bash", "-c", "exec -a triton_python_backend_stub sleep 60"],
                            env={**os.environ, leaks.LANE_ENV: "x"})
    deadline = time.monotonic() + 10
    while leaks.STUB not in " ".join(_cmdline(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.05)
    yield proc.pid
    proc.kill()
    proc.wait()


def _cmdline(pid: int) -> list[str]:
    import psutil

    try:
        return psutil.Process(pid).cmdline()
    except psutil.Error:
        return []


@pytest.mark.parametrize(("lane", "seen"), [("x", True), ("y", False), (None, True)])
def test_orphans_of_another_lane_are_not_this_lanes(fake_orphan_stub: int, monkeypatch: pytest.MonkeyPatch,
                                                    lane: str | None, seen: bool) -> None:
    if lane is None:
        monkeypatch.delenv(leaks.LANE_ENV, raising=False)
    else:
        monkeypatch.setenv(leaks.LANE_ENV, lane)
    assert (fake_orphan_stub in leaks.orphans(time.time() - 60)) is seen
