"""The idle-tax benchmark's pure parts: naming processes, CPU between snapshots, the summary."""

from __future__ import annotations

import pytest

from loadtests.bench_idle import aggregate, cores_by_kind, process_kind


@pytest.mark.parametrize(("argv", "kind"), [
    (["ray::ServeController"], "ray::ServeController"),
    (["ray::ServeReplica:sentiment-v1:ModelVersion.initialize_and_get_metadata   "],
     "ray::ServeReplica:sentiment-v1:ModelVersion"),  # the method running now is dropped
    (["ray::IDLE                                  "], "ray::IDLE"),
    (["/v/bin/python", "-u", "/v/ray/_private/log_monitor.py", "--session-dir=/tmp/x"], "log_monitor.py"),
    (["/v/bin/python", ".venv/bin/distilserve", "serve", "--port", "8000"], "distilserve"),
    (["/v/bin/python", "-m", "loadtests.bench_idle", "--one-target", "p"], "python -m loadtests.bench_idle"),
    (["/v/ray/core/src/ray/raylet/raylet", "--raylet_socket_name=/tmp/s"], "raylet"),
    (["/tmp/b/python/triton_python_backend_stub", "/tmp/m.py"], "triton_python_backend_stub"),
    ([], "?"),
])
def test_process_kind(argv: list[str], kind: str) -> None:
    assert process_kind(argv) == kind


def test_cores_by_kind_adds_processes_of_a_kind_and_counts_new_ones_from_zero() -> None:
    before = {1: ("raylet", 10.0), 2: ("ray::IDLE", 5.0), 3: ("ray::IDLE", 1.0)}
    after = {1: ("raylet", 10.5), 2: ("ray::IDLE", 5.2), 3: ("ray::IDLE", 1.2), 4: ("tritonserver", 2.0)}
    assert cores_by_kind(before, after, 10.0) == {"tritonserver": 0.2, "raylet": 0.05, "ray::IDLE": 0.04}


def test_aggregate_separates_the_model_from_everything_else() -> None:
    runs = [{"target": "stack", "repeat": r, "cores": {"triton_python_backend_stub": 0.01, "raylet": x,
                                                       "ray::ServeController": 0.04}}
            for r, x in ((1, 0.01), (2, 0.03), (3, 0.02))]
    out = aggregate(runs)["stack"]
    assert out["outside_the_model"] == {"n": 3, "median": 0.06, "min": 0.05, "max": 0.07}
    assert out["total"]["median"] == 0.07
    assert out["kinds"]["raylet"]["median"] == 0.02
