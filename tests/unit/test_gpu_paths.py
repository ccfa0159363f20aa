"""GPU paths, checked on CPU: KIND_GPU instances, num_gpus per replica, half-precision exports.

What needs CUDA is gated with a one-line reason; everything else runs in CI (no GPU there).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from serving.config import ServeConfig
from serving.triton.repo_view import make_view, patch_config, read_config

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "model_repository" / "sentiment"
require_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


# ---- Triton instance groups -------------------------------------------------------------------
@pytest.mark.parametrize("gpu, kind", [pytest.param(False, "KIND_CPU", id="cpu"), pytest.param(True, "KIND_GPU", id="gpu")])
def test_instance_group_kind_follows_gpu_flag(gpu: bool, kind: str) -> None:
    text = patch_config((TEMPLATE / "config.pbtxt").read_text(), "3", gpu=gpu)
    assert f"kind: {kind}" in text
    assert ("KIND_CPU" in text) is (not gpu)
    assert list(read_config(text).version_policy.specific.versions) == [3]


def test_replica_view_on_gpu_never_writes_the_shared_repository(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    shutil.copytree(TEMPLATE, repo / "sentiment", ignore=shutil.ignore_patterns("[0-9]*"))
    (repo / "sentiment" / "2").mkdir()
    before = (repo / "sentiment" / "config.pbtxt").read_text()
    view = make_view(repo, "sentiment", "2", tmp_path / "view", gpu=True)
    assert "kind: KIND_GPU" in (view / "sentiment" / "config.pbtxt").read_text()
    assert (repo / "sentiment" / "config.pbtxt").read_text() == before


# ---- Ray: num_gpus per replica from config ------------------------------------------------------
@pytest.mark.parametrize("gpu, expected", [
    pytest.param(0.0, None, id="cpu: no num_gpus key at all"),
    pytest.param(0.25, 0.25, id="quarter GPU: four replicas share one"),
    pytest.param(0.5, 0.5, id="half GPU"),
    pytest.param(1.0, 1.0, id="whole GPU"),
])
def test_version_app_requests_num_gpus_from_config(gpu: float, expected: float | None, tmp_path: Path) -> None:
    from serving.model_version import version_app

    cfg = ServeConfig(model_repository=tmp_path, gpu=gpu, replica_cpus=0.5)
    deployment = version_app(cfg, "sentiment", "1")._bound_deployment
    opts = deployment.ray_actor_options
    assert opts.get("num_gpus") == expected
    assert opts["num_cpus"] == 0.5
    # The replica is told to lay out KIND_GPU instances exactly when it holds a GPU share.
    assert deployment.init_args[4] is (gpu > 0)


def test_gpu_fraction_comes_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "serve.yaml"
    path.write_text("gpu: 0.5\nmodels: [sentiment]\n")
    assert ServeConfig.load(path).gpu == 0.5
    with pytest.raises(ValueError, match="gpu"):
        ServeConfig(gpu=-0.5)


# ---- Half-precision student exports -------------------------------------------------------------
def _export(tmp_path: Path, dtype: torch.dtype | None) -> Path:
    from distill.export import export_version
    from distill.models import tiny_teacher

    repo = tmp_path / "repo"
    if not (repo / "sentiment").is_dir():
        shutil.copytree(TEMPLATE, repo / "sentiment", ignore=shutil.ignore_patterns("[0-9]*", "__pycache__"))
    model, tok = tiny_teacher(["good", "bad", "fine"], layers=1, hidden=16)
    latency = [{"batch_size": 1, "p50_ms": 1.0, "p99_ms": 2.0, "runs": 5}]
    path, _ = export_version(
        model, tok, repo=repo, model_name="sentiment", dtype=dtype,
        card_fields={"kind": "student", "labels": ["negative", "neutral", "positive"], "max_seq_len": 32,
                     "accuracy": 0.5, "eval_examples": 10, "latency": latency},
        lineage_fields={"data_fingerprint": "test"},
    )
    return path


def _classifier(version_dir: Path, device: str = "cpu"):  # noqa: ANN202 - the model.py Classifier
    from serving.backends import load_classifier_module

    return load_classifier_module(version_dir.parent.parent, "sentiment").Classifier(version_dir, device=device)


@pytest.mark.parametrize("dtype, name", [pytest.param(torch.float16, "float16", id="fp16"),
                                         pytest.param(torch.bfloat16, "bfloat16", id="bf16")])
def test_half_export_card_dtype_and_cpu_fallback_to_fp32(dtype: torch.dtype, name: str, tmp_path: Path) -> None:
    full = _export(tmp_path, None)
    half = _export(tmp_path, dtype)
    assert json.loads((half / "card.json").read_text())["dtype"] == name
    assert json.loads((full / "card.json").read_text())["dtype"] == "float32"
    # Half the bytes on disk: the point of a half export.
    assert (half / "model.safetensors").stat().st_size < 0.6 * (full / "model.safetensors").stat().st_size
    clf = _classifier(half)  # on CPU the weights are upcast: CPU half kernels are slow or missing
    assert next(clf.model.parameters()).dtype == torch.float32
    probs, labels = clf.predict(["good", "bad fine"])
    assert probs.dtype.name == "float32" and probs.shape == (2, 3) and len(labels) == 2
    assert abs(float(probs.sum()) - 2.0) < 1e-4


@require_cuda
@pytest.mark.parametrize("dtype, name", [pytest.param(torch.float16, "float16", id="fp16"),
                                         pytest.param(torch.bfloat16, "bfloat16", id="bf16")])
def test_half_export_runs_in_half_on_gpu(dtype: torch.dtype, name: str, tmp_path: Path) -> None:
    fp32 = _classifier(_export(tmp_path, None), device="cuda")
    half = _classifier(_export(tmp_path, dtype), device="cuda")
    assert next(half.model.parameters()).dtype == dtype
    texts = ["good", "bad", "fine good bad"]
    p_half, _ = half.predict(texts)
    p_full, _ = fp32.predict(texts)
    assert p_half.dtype.name == "float32"
    # Same random init (seed 0) exported twice: half precision moves probabilities by < 1e-2.
    assert abs(p_half - p_full).max() < 1e-2
