"""model.py's intra-op threads: the configured count, capped at the CPUs the stub may use."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from distill import export
from distill.models import tiny_teacher
from tests.helpers import TEMPLATE

MODEL_PY = export.load_model_py(TEMPLATE)


@pytest.mark.parametrize(("cpu_max", "quota_us", "period_us", "expected"), [
    ("max 100000", None, None, None),  # v2, no limit
    ("150000 100000", None, None, 1.5),  # v2, --cpus 1.5
    ("50000 100000", None, None, 0.5),
    ("bogus", None, None, None),
    ("100000 0", None, None, None),  # a zero period is not understood, not a crash
    (None, "-1", "100000", None),  # v1, no limit
    (None, "200000", "100000", 2.0),  # v1, 2 CPUs
    (None, "x", "100000", None),
    (None, None, None, None),  # no cgroup files at all
])
def test_cpu_quota(cpu_max: str | None, quota_us: str | None, period_us: str | None, expected: float | None) -> None:
    assert MODEL_PY.cpu_quota(cpu_max=cpu_max, cfs_quota_us=quota_us, cfs_period_us=period_us) == expected


@pytest.mark.parametrize(("requested", "affinity", "quota", "expected"), [
    (2, 2, None, 2),  # the 2-core machine, unpinned
    (2, 1, None, 1),  # pinned to one CPU (bench_shed --server-cpus 1)
    (4, 16, 1.5, 2),  # a container limited to 1.5 CPUs on a large node: rounded up
    (4, 16, 0.5, 1),  # never under one thread
    (8, 4, 16.0, 4),  # the affinity is the tighter bound
    (1, 16, None, 1),  # never more than configured
    (0, 1, None, 0),  # 0: the runtime's own default, which follows the affinity mask itself
    (0, 16, None, 0),
    (0, 16, 1.5, 2),  # ... but not a cgroup limit: a container with --cpus 1.5 on a 16-CPU node
    (0, 64, 0.5, 1),
    (0, 2, 2.0, 0),  # a limit no tighter than the mask leaves the default
    (0, 2, 8.0, 0),
    (-1, 16, 2.0, 2),
    (3, 0, None, 1),  # a nonsense affinity count still leaves one thread
])
def test_usable_threads(requested: int, affinity: int, quota: float | None, expected: int) -> None:
    assert MODEL_PY.usable_threads(requested, affinity, quota) == expected


def test_the_stub_caps_its_configured_threads_at_its_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """What `initialize` passes on for TORCH_NUM_THREADS, from the process's affinity (set for the test)
    and its cgroup files (none here, so that a CI runner's own CPU limit cannot change the answer)."""
    logged: list[str] = []
    monkeypatch.setattr(MODEL_PY, "_log", lambda message, warn=False: logged.append(message))
    monkeypatch.setattr(MODEL_PY, "_read", lambda path: None)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert MODEL_PY.cpus_available()[0] == 1
    assert MODEL_PY.TritonPythonModel._threads(2) == 1
    assert logged and "TORCH_NUM_THREADS 2 capped to 1" in logged[0]
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    logged.clear()
    assert MODEL_PY.TritonPythonModel._threads(2) == 2 and not logged
    monkeypatch.setattr(MODEL_PY, "_read", lambda path: "100000 100000" if path.endswith("cpu.max") else None)
    assert MODEL_PY.TritonPythonModel._threads(2) == 1 and "cgroup limit of 1" in logged[0]
    logged.clear()  # 0 asks for the runtime's default, which would count the 4 CPUs and not the limit
    assert MODEL_PY.TritonPythonModel._threads(0) == 1
    assert "TORCH_NUM_THREADS 0 (the runtime's default) set to 1" in logged[0]


def test_the_in_process_backend_caps_its_threads_too(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """`--backend torch` (a replica or a batch job without Triton) sets torch's threads itself: the same cap."""
    import torch

    import serving.backends as serving_backends
    from serving.backends import TorchBackend

    repo = tmp_path / "repo"
    shutil.copytree(TEMPLATE, repo / "sentiment", ignore=shutil.ignore_patterns("[0-9]*", "__pycache__"))
    export.export_version(
        *tiny_teacher(["good", "bad"], layers=1, hidden=16), repo=repo, model_name="sentiment",
        card_fields={"kind": "teacher", "labels": ["negative", "neutral", "positive"], "max_seq_len": 16,
                     "accuracy": 0.5, "eval_examples": 10,
                     "latency": [{"batch_size": 1, "p50_ms": 1.0, "p99_ms": 2.0, "runs": 5}]},
        lineage_fields={"data_fingerprint": "test"},
    )
    before = torch.get_num_threads()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    try:
        backend = TorchBackend(repo, "sentiment", "1", torch_threads=2)
        assert torch.get_num_threads() == 1
        backend.close()
        # No count configured, 4 CPUs in the mask, a cgroup limit of 2: the limit decides.
        torch.set_num_threads(3)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
        module = export.load_model_py(repo / "sentiment")
        monkeypatch.setattr(serving_backends, "load_classifier_module", lambda repository, model: module)
        monkeypatch.setattr(module, "_read", lambda path: "200000 100000" if path.endswith("cpu.max") else None)
        backend = TorchBackend(repo, "sentiment", "1", torch_threads=None)
        assert torch.get_num_threads() == 2
        backend.close()
    finally:
        torch.set_num_threads(before)
