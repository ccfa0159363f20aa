"""The one schema of `card.json`, the file that travels with every model version.

`distill/` writes it when it exports a version; `serving/` reads it (registry lineage,
rollout gates). Neither package imports the other: both import this module.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from distilserve.core.names import MODEL_PATTERN, VERSION_PATTERN

CARD_FILENAME = "card.json"


class LatencyStats(BaseModel):
    """Latency of one batch size, in milliseconds, measured on `ModelCard.measured_on`."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(ge=1, description="Items per forward pass.")
    p50_ms: float = Field(ge=0, description="Median latency of one forward pass (tokenize included).")
    p99_ms: float = Field(ge=0, description="99th percentile latency of one forward pass.")
    runs: int = Field(ge=1, description="Timed runs behind the percentiles.")


class Lineage(BaseModel):
    """Where a version came from: enough to rebuild it and to diff two versions."""

    model_config = ConfigDict(extra="forbid")

    weights_sha256: str = Field(description="sha256 of the weights file (model.safetensors, or model.onnx).")
    code_commit: str = Field(description="git commit of the code that built the version ('unknown' outside git).")
    code_dirty: bool = Field(description="True when the work tree had uncommitted changes.")
    data_fingerprint: str = Field(description="Fingerprint of the data splits used (see distill.data).")
    config_hash: str = Field(description="sha256 of the canonical JSON of `config`.")
    config: dict = Field(default_factory=dict, description="The training/distillation config itself.")
    teacher_version: str | None = Field(default=None, description="For students: the teacher's version.")
    base_model: str = Field(default="", description="Backbone the weights started from.")
    parent_version: str | None = Field(
        default=None, description="For compiled versions: the version they were compiled from."
    )


class DataSource(BaseModel):
    """The labelled data a version was trained or evaluated on, so students and imports can find it."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="Data file or saved `datasets` folder ('' for the built-in tweet corpus).")
    format: Literal["csv", "jsonl", "parquet", "datasets", "corpus"] = Field(description="How `path` is read.")
    text_column: str = Field(description="Column holding the input text.")
    label_column: str = Field(description="Column holding the class name.")
    labels: list[str] = Field(min_length=2, description="Class names in output order (label id = index).")
    split: dict[str, int | float] = Field(
        default_factory=dict, description="Split settings: test_size, val_size, train_size (rows), seed, ..."
    )


class ModelCard(BaseModel):
    """Measured facts about one exported model version."""

    model_config = ConfigDict(extra="forbid")

    schema_version: Literal[1] = 1
    model: str = Field(pattern=MODEL_PATTERN, description="Model name, e.g. 'sentiment'.")
    version: str = Field(pattern=VERSION_PATTERN, description="Triton version number as a string.")
    kind: Literal["teacher", "student", "baseline", "imported"] = Field(description="Role of this version.")
    labels: list[str] = Field(min_length=2, description="Class names in output order.")
    max_seq_len: int = Field(ge=8, le=4096, description="Tokenizer truncation length used in serving.")
    accuracy: float = Field(ge=0, le=1, description="Held-out accuracy (mean over seeds when several).")
    accuracy_std: float = Field(default=0.0, ge=0, description="Std of accuracy over seeds (0 for one seed).")
    accuracy_seeds: list[float] = Field(default_factory=list, description="Per-seed held-out accuracies.")
    eval_examples: int = Field(ge=1, description="Held-out examples behind `accuracy`.")
    latency: list[LatencyStats] = Field(min_length=1, description="Latency at batch 1 and batch 32.")
    parameters: int = Field(ge=1, description="Parameter count.")
    bytes: int = Field(ge=1, description="Size of the weights file in bytes.")
    dtype: str = Field(default="float32", description="Weights dtype as exported.")
    measured_on: str = Field(default="", description="Machine the latency was measured on.")
    runtime: Literal["torch", "onnx"] = Field(
        default="torch", description="What serves the weights: PyTorch (safetensors) or ONNX Runtime (model.onnx)."
    )
    quantization: Literal["int8-dynamic"] | None = Field(
        default=None, description="Post-training quantization applied when compiling, if any."
    )
    parent_agreement: float | None = Field(
        default=None, ge=0, le=1, description="Compiled versions: share of test rows labelled as the parent labels them."
    )
    graph_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$",
        description="sha256 of model.torchscript.pt, the traced forward a torch version may be served from "
                    "(None: no graph; model.py loads no graph whose hash differs).",
    )
    created_at: str = Field(description="UTC ISO-8601 time of export.")
    lineage: Lineage
    data_source: DataSource | None = Field(default=None, description="Where the data behind `accuracy` came from.")
    validation_accuracy: float | None = Field(
        default=None, ge=0, le=1, description="Accuracy on the validation split the model was selected on."
    )

    @field_validator("labels")
    @classmethod
    def _labels_unique(cls, labels: list[str]) -> list[str]:
        if len(set(labels)) != len(labels):
            raise ValueError(f"labels must be unique, got {labels}")
        return labels

    def latency_at(self, batch_size: int) -> LatencyStats | None:
        """The latency entry for `batch_size`, or None when it was not measured."""
        return next((s for s in self.latency if s.batch_size == batch_size), None)

    def write(self, version_dir: Path) -> Path:
        path = Path(version_dir) / CARD_FILENAME
        path.write_text(json.dumps(self.model_dump(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, version_dir: Path) -> ModelCard:
        return cls.model_validate_json((Path(version_dir) / CARD_FILENAME).read_text())
