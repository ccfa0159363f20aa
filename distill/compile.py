"""Compile an exported torch version into ONNX Runtime (optionally int8) as the next version.

`compile_version(repo, model, version)` loads version V (safetensors + tokenizer + card),
exports it with `torch.onnx.export(dynamo=True)` (dynamic batch and sequence axes), optionally
quantizes the graph's weights to int8 (`onnxruntime.quantization.quantize_dynamic`), and
measures the result against V in the same process, both through the repository's own
`model.py` (the code that serves them): accuracy on V's test rows, label agreement with V,
latency at batch 1 and 32. A version whose accuracy falls more than 0.5 points below V's is
refused unless forced; an accepted one becomes the next version, its card naming V as parent.

Why not Hugging Face `optimum-onnx`: its releases (0.1.0 and before) require
transformers < 4.58, and this project runs transformers 5.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from distill import data, evaluate, export, graph
from distill.student import fastest, speedups
from distilserve.core.card import DataSource, LatencyStats, ModelCard

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"  # the name model.py looks for
ONNX_OPSET = 18  # the dynamo exporter's lowest; >= 17 gives LayerNormalization as one op
MAX_DROP_POINTS = 0.5  # accuracy points (of 100) a compiled version may lose against its parent
Quantization = Literal["int8"]


class CompileRefused(RuntimeError):
    """The compiled version lost too much accuracy; nothing was written."""


@dataclass(frozen=True)
class Verdict:
    accepted: bool
    message: str


def verdict(parent_accuracy: float, accuracy: float, *, eval_examples: int, force: bool = False,
            max_drop_points: float = MAX_DROP_POINTS) -> Verdict:
    """Accept unless accuracy fell more than `max_drop_points` below the parent's (or `force`)."""
    drop = (parent_accuracy - accuracy) * 100.0
    numbers = (f"accuracy {accuracy:.4f} vs parent {parent_accuracy:.4f} on {eval_examples} test rows "
               f"({-drop:+.2f} points; at most -{max_drop_points:g} allowed)")
    # Rounded first: 0.8 - 0.795 is 0.5000000000000004 points in floating point, and that is a pass.
    if round(drop, 9) <= max_drop_points:
        return Verdict(True, numbers)
    if force:
        return Verdict(True, numbers + "; accepted because of --force")
    return Verdict(False, numbers + "; refused (use --force to keep it anyway)")


# ---------------------------------------------------------------- the parent's test rows


def data_source_of(card: ModelCard, model_dir: Path) -> DataSource:
    """The data behind `card`: its own `data_source`, else the first one up its lineage.

    A student's data is its teacher's (lineage.teacher_version), a compiled version's its
    parent's (lineage.parent_version). Teachers exported before cards recorded a data source
    name the built-in corpus through their recipe config.
    """
    seen: list[str] = []
    while True:
        cfg = card.lineage.config
        if card.data_source is not None:
            return card.data_source
        if cfg.get("recipe") == "teacher":
            split = {k: cfg[k] for k in ("test_size", "train_size", "val_size", "seed", "min_confidence") if k in cfg}
            return DataSource(path="", format="corpus", text_column="text", label_column="sentiment",
                                   labels=list(card.labels), split=split)
        seen.append(card.version)
        nxt = card.lineage.parent_version or card.lineage.teacher_version
        if nxt is None or nxt in seen:
            raise ValueError(
                f"cannot find the data of version {seen[0]}: lineage {' -> '.join(seen)} reaches no card "
                f"with a data_source nor a teacher recipe to rebuild the test split from"
            )
        card = ModelCard.read(model_dir / nxt)


def held_out_rows(card: ModelCard, model_dir: Path) -> tuple[list[str], np.ndarray]:
    """The texts and labels `card.accuracy` was measured on: the first `eval_examples` test rows.

    Students evaluate on a prefix of their teacher's test split (distill.student.student_rows);
    for a teacher the prefix is the whole split.
    """
    test, fingerprint = data.recorded_test_rows(data_source_of(card, model_dir))
    if fingerprint != card.lineage.data_fingerprint:
        raise ValueError(
            f"version {card.version} was measured on data {card.lineage.data_fingerprint}, but its data "
            f"source now gives {fingerprint}: the data file or the split code changed"
        )
    test = test.select(range(min(card.eval_examples, len(test))))
    return list(test["text"]), np.asarray(test["label"])


# ---------------------------------------------------------------- export and quantization


def export_onnx(version_dir: Path, dst: Path, example_texts: list[str], max_len: int) -> list[str]:
    """V's weights as ONNX at `dst`: inputs as the tokenizer names them, output `logits`.

    Batch and sequence axes are dynamic. The example batch must hold two texts of different
    lengths: torch.export specialises any axis whose example size is 1.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(version_dir)
    model = AutoModelForSequenceClassification.from_pretrained(version_dir, use_safetensors=True)
    model = model.float().eval()  # fp16/bf16 exports are GPU-only; ONNX CPU kernels want fp32
    enc = tokenizer(example_texts[:2], truncation=True, max_length=max_len, padding=True, return_tensors="pt")
    names = [n for n in tokenizer.model_input_names if n in enc]

    class Logits(torch.nn.Module):  # positional inputs in `names` order -> logits only
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(names, inputs, strict=True))).logits

    batch, seq = torch.export.Dim("batch"), torch.export.Dim("seq")
    torch.onnx.export(
        Logits().eval(), tuple(enc[n] for n in names), str(dst), dynamo=True, external_data=False,
        input_names=names, output_names=["logits"], opset_version=ONNX_OPSET,
        dynamic_shapes=(tuple({0: batch, 1: seq} for _ in names),),  # one entry: the *inputs tuple
    )
    import onnx

    # The exporter annotates every node with its Python stack trace (this machine's paths, ~60%
    # of a tiny model's bytes): drop them, so the file and its sha256 depend only on the weights.
    proto = onnx.load(str(dst))
    for node in proto.graph.node:
        del node.metadata_props[:]
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, str(dst))
    return names


def quantize_int8(src: Path, dst: Path) -> None:
    """Dynamic int8: weights of MatMul/Gemm stored as int8, activations quantized per batch."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)


# ---------------------------------------------------------------- measurement


def predict_all(predict: Callable[[list[str]], tuple[np.ndarray, list[str]]], texts: list[str],
                batch_size: int = 64) -> np.ndarray:
    """Probabilities [N, C] of `texts`, `batch_size` at a time."""
    return np.concatenate([predict(texts[i : i + batch_size])[0] for i in range(0, len(texts), batch_size)])


def paired_latency(parent: Callable, child: Callable, texts: list[str], runs: int,
                   rounds: int = 2) -> tuple[list[LatencyStats], list[LatencyStats]]:
    """Latency of both at batch 1 and 32, alternating P,C,C,P; each keeps its fastest per batch size."""
    got: dict[str, list[list[LatencyStats]]] = {"parent": [], "child": []}
    for r in range(rounds):
        order = [("parent", parent), ("child", child)]
        for side, fn in order if r % 2 == 0 else order[::-1]:
            got[side].append(evaluate.time_batches(fn, texts, runs=runs))
    return fastest(*got["parent"]), fastest(*got["child"])


@dataclass
class CompileResult:
    """What the compile measured; `version_dir`/`card` are None when it was refused."""

    parent_version: str
    parent_accuracy: float
    accuracy: float
    agreement: float
    eval_examples: int
    parent_latency: list[LatencyStats]
    latency: list[LatencyStats]
    verdict: Verdict
    version_dir: Path | None = None
    card: ModelCard | None = None

    def summary(self) -> str:
        speed = ", ".join(f"batch {b}: {x:.2f}x" for b, x in speedups(self.parent_latency, self.latency).items())
        where = f"wrote {self.version_dir}" if self.version_dir else "wrote nothing"
        return (f"{where}: {self.verdict.message}; label agreement with version {self.parent_version} "
                f"{self.agreement:.4f}; speed vs parent (p50) {speed}")


# ---------------------------------------------------------------- the command


def compile_version(
    repo: Path,
    model_name: str,
    version: str,
    *,
    runtime: Literal["onnx"] = "onnx",
    quantize: Quantization | None = None,
    force: bool = False,
    max_drop_points: float = MAX_DROP_POINTS,
    latency_runs: int = 50,
) -> CompileResult:
    """Compile `<repo>/<model_name>/<version>` into the next version; raise CompileRefused if it is worse."""
    if runtime != "onnx":
        raise ValueError(f"runtime must be 'onnx', got {runtime!r}")
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be 'int8' or None, got {quantize!r}")
    model_dir = Path(repo) / model_name
    parent_dir = model_dir / version
    if not (parent_dir / "card.json").is_file():
        raise FileNotFoundError(f"version {version!r} of model {model_name!r} not found: no {parent_dir}/card.json")
    parent = ModelCard.read(parent_dir)
    if parent.runtime != "torch" or not (parent_dir / export.WEIGHTS).is_file():
        raise ValueError(f"version {version} is not a torch version with {export.WEIGHTS} "
                         f"(runtime {parent.runtime!r}): compile the version it came from instead")
    texts, labels = held_out_rows(parent, model_dir)

    new_version = export.next_version(model_dir)
    staging = model_dir / f".compile-{new_version}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        fp32 = staging / ONNX_FILE
        inputs = export_onnx(parent_dir, fp32, texts, parent.max_seq_len)
        if quantize == "int8":
            quantize_int8(fp32, staging / "model.int8.onnx")
            (staging / "model.int8.onnx").replace(fp32)
        for item in parent_dir.iterdir():  # tokenizer files and config.json (labels, provenance)
            if item.is_file() and not item.is_symlink() and item.name not in (export.WEIGHTS, "card.json",
                                                                               graph.GRAPH_FILE):
                shutil.copy2(item, staging / item.name)
        card = _card(parent, staging, new_version, quantize, inputs)
        card.write(staging)  # provisional: model.py reads runtime and labels from it

        module = export.load_model_py(model_dir)
        old, new = module.Classifier(parent_dir), module.Classifier(staging)
        p_old, p_new = predict_all(old.predict, texts), predict_all(new.predict, texts)
        parent_acc = float((p_old.argmax(1) == labels).mean())
        acc = float((p_new.argmax(1) == labels).mean())
        agreement = float((p_old.argmax(1) == p_new.argmax(1)).mean())
        lat_old, lat_new = paired_latency(old.predict, new.predict, texts, latency_runs)
        decision = verdict(parent_acc, acc, eval_examples=len(texts), force=force,
                           max_drop_points=max_drop_points)
        result = CompileResult(version, parent_acc, acc, agreement, len(texts), lat_old, lat_new, decision)
        if not decision.accepted:
            raise CompileRefused(result.summary())
        card = ModelCard.model_validate({
            **card.model_dump(), "accuracy": acc, "accuracy_seeds": [acc], "parent_agreement": agreement,
            "latency": [s.model_dump() for s in lat_new],
            "measured_on": f"{evaluate.machine()}, onnxruntime {_ort_version()}",
        })
        card.write(staging)
        (staging / "model.py").symlink_to(Path("..") / "model.py")
        final = model_dir / new_version
        staging.rename(final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    result.version_dir, result.card = final, card
    return result


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


def _card(parent: ModelCard, staging: Path, version: str, quantize: str | None, inputs: list[str]) -> ModelCard:
    """The new version's card before measurement (accuracy and latency copied from the parent)."""
    import torch

    weights = staging / ONNX_FILE
    commit, dirty = export.code_state()
    config = {"recipe": "compile", "runtime": "onnx", "quantize": quantize, "opset": ONNX_OPSET,
              "exporter": "torch.onnx.export(dynamo=True)", "inputs": inputs, "torch": torch.__version__,
              "onnxruntime": _ort_version()}
    lineage = {**parent.lineage.model_dump(), "weights_sha256": export.sha256_file(weights),
               "code_commit": commit, "code_dirty": dirty, "config": config,
               "config_hash": export.config_hash(config), "parent_version": parent.version}
    return ModelCard.model_validate({
        **parent.model_dump(), "version": version, "bytes": weights.stat().st_size,
        "dtype": "int8" if quantize else "float32", "runtime": "onnx",
        "quantization": "int8-dynamic" if quantize else None, "accuracy_std": 0.0, "lineage": lineage,
        "graph_sha256": None,  # the parent's traced torch graph is not this version's
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    })
