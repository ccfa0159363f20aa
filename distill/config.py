"""A distillation run's configuration: one pydantic model, loaded from YAML.

``DistillConfig.from_yaml(path)`` validates a file; unknown keys fail with the list of valid
keys. Checks that need the teacher (layer indices, head counts) run at build time through
:meth:`StudentSpec.check_against_teacher`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Protocol

import yaml
from pydantic import Field, model_validator

from distill.losses import (
    CEConfig,
    KDKLConfig,
    LayerMappedConfig,
    LossConfig,
    StrictModel,
)


class _TeacherConfig(Protocol):
    num_hidden_layers: int
    hidden_size: int
    num_attention_heads: int


class StudentSpec(StrictModel):
    """What student to build from the teacher."""

    layers: list[int] = Field(
        ..., min_length=1, description="0-based teacher encoder layers the student keeps, in order."
    )
    hidden_size: int | None = Field(
        None, gt=0, description="Narrower student width; None keeps the teacher's (layers copied)."
    )
    num_heads: int | None = Field(None, gt=0, description="Attention heads; None keeps the teacher's.")
    intermediate_size: int | None = Field(
        None, gt=0, description="Feed-forward width; None keeps the teacher's."
    )
    prune_vocab: bool = Field(False, description="Keep only the tokens the training corpus uses.")

    @model_validator(mode="after")
    def _check(self) -> StudentSpec:
        negative = [i for i in self.layers if i < 0]
        if negative:
            raise ValueError(f"layers must be >= 0, got {negative} in {self.layers}, e.g. [0, 5]")
        if len(set(self.layers)) != len(self.layers):
            raise ValueError(f"layers must not repeat, got {self.layers}, e.g. [0, 5]")
        if self.hidden_size is not None and self.num_heads is not None and self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be divisible by num_heads ({self.num_heads})"
            )
        return self

    @property
    def is_narrow(self) -> bool:
        """True when the student differs from the teacher in width (a fresh, smaller model)."""
        return any(v is not None for v in (self.hidden_size, self.num_heads, self.intermediate_size))

    def check_against_teacher(self, teacher_config: _TeacherConfig) -> None:
        """Raise ``ValueError`` quoting the bad values if this spec does not fit the teacher."""
        n = teacher_config.num_hidden_layers
        bad = [i for i in self.layers if i >= n]
        if bad:
            raise ValueError(f"layers {bad} out of range for a teacher with {n} layers (valid: 0..{n - 1})")
        hidden = self.hidden_size or teacher_config.hidden_size
        heads = self.num_heads or teacher_config.num_attention_heads
        if hidden % heads:
            raise ValueError(f"hidden_size ({hidden}) must be divisible by num_heads ({heads})")


class TrainingConfig(StrictModel):
    """Optimisation settings."""

    epochs: int = Field(1, ge=1, description="Passes over the training set.")
    batch_size: int = Field(32, ge=1, description="Examples per optimiser step.")
    lr: float = Field(5e-5, gt=0.0, description="Peak learning rate (AdamW).")
    max_seq_len: int = Field(64, ge=2, description="Tokens per example after truncation.")
    warmup_ratio: float = Field(0.1, ge=0.0, lt=1.0, description="Fraction of steps of linear warm-up.")
    weight_decay: float = Field(0.01, ge=0.0, description="AdamW weight decay.")
    seeds: list[int] = Field([0], min_length=1, description="One run per seed; report mean and spread.")


# A share of a teacher split (float in (0, 1]) or a row count (int >= 1, capped at the split's size).
SplitSize = Annotated[float, Field(gt=0.0, le=1.0)] | Annotated[int, Field(ge=1)]


def rows_for(size: float | int, available: int) -> int:
    """Rows a SplitSize takes out of `available`: a share rounds (at least 1), a count is capped."""
    if isinstance(size, float):
        return min(available, max(1, round(available * size)))
    return min(available, size)


class DataConfig(StrictModel):
    """How much of the teacher's splits the student uses: counts or shares, so any dataset size fits."""

    train_size: SplitSize = Field(1.0, description="Labelled training rows: a count or a share of the teacher's train split.")
    test_size: SplitSize = Field(1.0, description="Test rows for the reported accuracy: a count or a share.")
    val_size: SplitSize = Field(1.0, description="Validation rows the best seed is chosen on: a count or a share.")
    use_transfer_set: bool = Field(False, description="Add unlabeled rows scored only by the teacher.")
    transfer_size: int = Field(0, ge=0, description="Unlabeled transfer-set rows when enabled.")

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.use_transfer_set and self.transfer_size == 0:
            raise ValueError(
                f"use_transfer_set is true but transfer_size is {self.transfer_size}; set e.g. transfer_size: 5000"
            )
        if not self.use_transfer_set and self.transfer_size:
            raise ValueError(
                f"transfer_size ({self.transfer_size}) is set but use_transfer_set is false"
            )
        return self


def _default_losses() -> list[LossConfig]:
    return [KDKLConfig(weight=0.7, temperature=2.0), CEConfig(weight=0.3)]


class DistillConfig(StrictModel):
    """One distillation recipe: student shape, losses, training and data settings."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="Recipe name, e.g. student_l2.")
    student: StudentSpec = Field(..., description="Which student to build from the teacher.")
    losses: list[LossConfig] = Field(
        default_factory=_default_losses, min_length=1,
        description="Weighted loss terms; default 0.7 * kd_kl(T=2) + 0.3 * ce.",
    )
    training: TrainingConfig = Field(default_factory=TrainingConfig, description="Optimisation settings.")
    data: DataConfig = Field(default_factory=DataConfig, description="Split sizes and transfer set.")
    teacher_version: str = Field("1", min_length=1, description="Registry version of the teacher.")

    @model_validator(mode="after")
    def _check(self) -> DistillConfig:
        n_student = len(self.student.layers)
        for loss in self.losses:
            if isinstance(loss, LayerMappedConfig):
                bad = [s for _, s in loss.layer_map if not -n_student <= s < n_student]
                if bad:
                    raise ValueError(
                        f"{loss.kind}: student layers {bad} in layer_map {loss.layer_map} out of range "
                        f"for a student with {n_student} layers {self.student.layers}"
                    )
                # Teacher indices are checked at build time, against the teacher itself.
        if self.data.use_transfer_set and not any(loss.kind != "ce" for loss in self.losses):
            raise ValueError(
                f"use_transfer_set needs a teacher-driven loss (unlabeled rows give CE nothing); "
                f"losses are {[loss.kind for loss in self.losses]}"
            )
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> DistillConfig:
        """Load and validate a YAML file."""
        path = Path(path)
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        return cls.model_validate(data)

    def to_yaml(self, path: str | Path | None = None) -> str:
        """Dump as YAML (to ``path`` if given) and return the text."""
        text = yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def config_hash(self) -> str:
        """sha256 hex digest of the canonical JSON (sorted keys, no whitespace, defaults filled)."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


CONFIG_DIR = Path(__file__).parent / "configs"


def shipped_configs() -> dict[str, Path]:
    """The YAML recipes shipped under ``distill/configs/``, by file stem."""
    return {p.stem: p for p in sorted(CONFIG_DIR.glob("*.yaml"))}


def load_config(name_or_path: str | Path) -> DistillConfig:
    """Load a shipped recipe by name (``"student_l2"``) or any YAML file by path."""
    shipped = shipped_configs()
    if str(name_or_path) in shipped:
        return DistillConfig.from_yaml(shipped[str(name_or_path)])
    path = Path(name_or_path)
    if not path.is_file():
        raise FileNotFoundError(f"no config {str(name_or_path)!r}; shipped: {sorted(shipped)} or a YAML path")
    return DistillConfig.from_yaml(path)
