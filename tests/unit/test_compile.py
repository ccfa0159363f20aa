"""Pure parts of `distilserve compile` and of model.py's runtime choice, as tables."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from distill.compile import data_source_of, verdict
from distilserve.core.card import DataSource, ModelCard
from tests.helpers import TEMPLATE, load_module

model_py = load_module(TEMPLATE / "model.py", "unit_sentiment_model_py")


# ------------------------------------------------------------------ the refusal rule


@pytest.mark.parametrize(
    ("parent", "new", "force", "accepted"),
    [
        pytest.param(0.80, 0.80, False, True, id="same-accuracy"),
        pytest.param(0.80, 0.81, False, True, id="better"),
        pytest.param(0.800, 0.797, False, True, id="drop-0.3-points"),
        # 0.800 - 0.795 = 0.5 points exactly (0.50000000000000044 in floats): still allowed.
        pytest.param(0.800, 0.795, False, True, id="drop-exactly-0.5-points"),
        pytest.param(0.800, 0.794, False, False, id="drop-0.6-points-refused"),
        pytest.param(0.800, 0.794, True, True, id="drop-0.6-points-forced"),
        pytest.param(0.90, 0.10, False, False, id="collapse-refused"),
        pytest.param(0.90, 0.10, True, True, id="collapse-forced"),
    ],
)
def test_accuracy_drop_over_half_a_point_is_refused_unless_forced(
    parent: float, new: float, force: bool, accepted: bool
) -> None:
    got = verdict(parent, new, eval_examples=1000, force=force)
    assert got.accepted is accepted
    # The message quotes both accuracies whatever the outcome.
    assert f"{new:.4f}" in got.message and f"{parent:.4f}" in got.message
    assert ("refused" in got.message) is (not accepted)


def test_the_allowed_drop_is_a_parameter() -> None:
    # 0.80 -> 0.79 is a 1-point drop: refused at 0.5, accepted at 2.
    assert not verdict(0.80, 0.79, eval_examples=100).accepted
    assert verdict(0.80, 0.79, eval_examples=100, max_drop_points=2).accepted


# ------------------------------------------------------------------ model.py runtime choice

CPU, CUDA, TRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"


@pytest.mark.parametrize(
    ("device", "available", "prefer", "expected"),
    [
        pytest.param("cpu", [CPU], "auto", [CPU], id="cpu-machine"),
        pytest.param("cpu", [TRT, CUDA, CPU], "auto", [CPU], id="cpu-instance-on-gpu-build"),
        pytest.param("cuda:0", [CPU], "auto", [CPU], id="gpu-instance-cpu-wheel-degrades"),
        pytest.param("cuda:1", [TRT, CUDA, CPU], "auto", [CUDA, CPU], id="gpu-auto-is-cuda"),
        pytest.param("cuda:0", [TRT, CUDA, CPU], "tensorrt", [TRT, CUDA, CPU], id="gpu-tensorrt-asked"),
        pytest.param("cuda:0", [CUDA, CPU], "tensorrt", [CUDA, CPU], id="tensorrt-asked-not-built"),
        pytest.param("cuda:0", [TRT, CUDA, CPU], "cpu", [CPU], id="gpu-forced-cpu"),
    ],
)
def test_onnx_providers_degrade_to_what_this_build_has(
    device: str, available: list[str], prefer: str, expected: list[str]
) -> None:
    providers = model_py.onnx_providers(device, available, prefer)
    assert [p if isinstance(p, str) else p[0] for p in providers] == expected
    device_id = int(device.partition(":")[2] or 0)
    assert all(p[1]["device_id"] == device_id for p in providers if not isinstance(p, str))


def test_unknown_onnx_provider_names_the_choices() -> None:
    with pytest.raises(ValueError, match=r"ONNX_PROVIDER must be one of \['auto', 'cpu', 'cuda', 'tensorrt'\], got 'rocm'"):
        model_py.onnx_providers("cuda:0", [CPU], "rocm")


@pytest.mark.parametrize(
    ("files", "card", "expected"),
    [
        pytest.param(["model.safetensors"], {}, "torch", id="old-card-safetensors"),
        pytest.param(["model.onnx"], {}, "onnx", id="no-runtime-onnx-file"),
        pytest.param(["model.onnx"], {"runtime": "onnx"}, "onnx", id="card-onnx"),
        pytest.param(["model.safetensors", "model.onnx"], {"runtime": "torch"}, "torch", id="card-wins"),
    ],
)
def test_runtime_comes_from_the_card_else_the_files(tmp_path: Path, files: list[str], card: dict, expected: str) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"")
    assert model_py.runtime_of(tmp_path, card) == expected


def test_unknown_runtime_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="runtime must be 'torch' or 'onnx', got 'tensorflow'"):
        model_py.runtime_of(tmp_path, {"runtime": "tensorflow"})


def _io(name: str, dtype: str) -> dict:
    return {"name": name, "data_type": dtype, "dims": [1]}


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        pytest.param({"input": [_io("TEXT", "TYPE_STRING")],
                      "output": [_io("PROBABILITIES", "TYPE_FP32"), _io("LABEL", "TYPE_STRING")]},
                     ("TEXT", "PROBABILITIES", "LABEL"), id="shipped-names"),
        pytest.param({"input": [_io("REVIEW", "TYPE_STRING")],
                      "output": [_io("CLASS", "TYPE_STRING"), _io("SCORES", "TYPE_FP16")]},
                     ("REVIEW", "SCORES", "CLASS"), id="renamed-any-order"),
    ],
)
def test_tensor_names_come_from_the_config(config: dict, expected: tuple[str, str, str]) -> None:
    assert tuple(model_py.tensor_names(config)) == expected


def test_a_config_without_a_label_output_is_refused_with_what_it_has() -> None:
    config = {"input": [_io("TEXT", "TYPE_STRING")], "output": [_io("PROBABILITIES", "TYPE_FP32")]}
    with pytest.raises(ValueError, match=r"got inputs \['TEXT'\] and outputs \['PROBABILITIES'\]"):
        model_py.tensor_names(config)


# ------------------------------------------------------------------ cards and lineage


def _card(version: str, config: dict, **lineage: object) -> ModelCard:
    return ModelCard.model_validate({
        "model": "sentiment", "version": version, "kind": "teacher", "labels": ["a", "b"], "max_seq_len": 64,
        "accuracy": 0.5, "eval_examples": 10, "parameters": 1, "bytes": 1, "created_at": "2026-11-30T00:00:00+00:00",
        "latency": [{"batch_size": 1, "p50_ms": 1.0, "p99_ms": 1.0, "runs": 5}],
        "lineage": {"weights_sha256": "x", "code_commit": "c", "code_dirty": False, "data_fingerprint": "f",
                    "config_hash": "h", "config": config, **lineage},
    })


SPLIT = {"min_confidence": 0.7, "test_size": 100, "train_size": 300, "seed": 1}
FILE = {"path": "/data/reviews.csv", "format": "csv", "text_column": "review", "label_column": "stars",
        "labels": ["a", "b"], "split": {"test_size": 10, "val_size": 10, "train_size": 80, "seed": 0}}


@pytest.mark.parametrize(
    ("version", "expected"),
    [
        pytest.param("1", ("corpus", SPLIT), id="old-teacher-recipe-config"),
        pytest.param("2", ("corpus", SPLIT), id="student-via-teacher_version"),
        pytest.param("3", ("corpus", SPLIT), id="compiled-student-via-parent-then-teacher"),
        pytest.param("4", ("csv", FILE["split"]), id="own-data_source-wins"),
        pytest.param("5", ("csv", FILE["split"]), id="compiled-via-parent-data_source"),
    ],
)
def test_data_source_follows_the_lineage(tmp_path: Path, version: str, expected: tuple) -> None:
    cards = [
        _card("1", {"recipe": "teacher", "epochs": 2, **SPLIT}),
        _card("2", {"recipe": "student"}, teacher_version="1"),
        _card("3", {"recipe": "compile"}, parent_version="2", teacher_version="1"),
        _card("4", {"recipe": "teacher"}).model_copy(update={"data_source": DataSource.model_validate(FILE)}),
        _card("5", {"recipe": "compile"}, parent_version="4"),
    ]
    for card in cards:
        (tmp_path / card.version).mkdir()
        ModelCard.model_validate(card.model_dump()).write(tmp_path / card.version)
    source = data_source_of(ModelCard.read(tmp_path / version), tmp_path)
    assert (source.format, source.split) == expected


def test_data_source_missing_says_where_the_lineage_ended(tmp_path: Path) -> None:
    orphan = _card("4", {"recipe": "student"})
    with pytest.raises(ValueError, match="lineage 4 reaches no card with a data_source nor a teacher recipe"):
        data_source_of(orphan, tmp_path)


def test_cards_written_before_compile_existed_still_read_as_torch(tmp_path: Path) -> None:
    raw = _card("1", {"recipe": "teacher"}).model_dump()
    for key in ("runtime", "quantization", "parent_agreement", "data_source"):
        del raw[key]
    del raw["lineage"]["parent_version"]
    (tmp_path / "card.json").write_text(json.dumps(raw))
    card = ModelCard.read(tmp_path)
    assert (card.runtime, card.quantization, card.parent_agreement, card.lineage.parent_version) == (
        "torch", None, None, None)


def test_tensorrt_gets_one_shape_profile_covering_every_batch_triton_forms() -> None:
    opts = model_py.trt_options(["input_ids", "attention_mask"], max_batch=64, max_len=128, fp16=True)
    assert opts["trt_profile_min_shapes"] == "input_ids:1x1,attention_mask:1x1"
    assert opts["trt_profile_max_shapes"] == "input_ids:64x128,attention_mask:64x128"
    (name, trt_opts), *_ = model_py.onnx_providers("cuda:0", [TRT, CUDA, CPU], "tensorrt", opts)
    assert name == TRT and trt_opts["trt_fp16_enable"] is True and trt_opts["trt_engine_cache_enable"] is True
    assert trt_opts["trt_profile_max_shapes"] == opts["trt_profile_max_shapes"]
