"""The teacher recipe: fine-tune an encoder (default: MiniLM-L6) on labelled data (default: the
tweet corpus), choose the best epoch on the validation split, report accuracy on the test split,
and export it as a version whose card records the data source and split."""

from __future__ import annotations

import collections
import copy
import logging
import re
from pathlib import Path
from typing import Annotated

import torch
from pydantic import BaseModel, ConfigDict, Field

from distill import data, evaluate, export, models, train
from distill.errors import InputError
from distilserve.core.card import DataSource, ModelCard

log = logging.getLogger(__name__)

# A split size: a row count (int >= 1) or a share of the rows (float in (0, 1)); None = the default.
TeacherSize = Annotated[float, Field(gt=0.0, lt=1.0)] | Annotated[int, Field(ge=1)] | None


class TeacherConfig(BaseModel):
    """Everything that decides the teacher's weights; hashed into its lineage."""

    model_config = ConfigDict(extra="forbid")

    quick: bool = Field(default=False, description="Tiny random BERT on a few hundred rows (tests, demos).")
    epochs: int = Field(default=1, ge=1, le=20, description="Passes over the train split.")
    batch_size: int = Field(default=32, ge=1, le=1024, description="Training batch size.")
    lr: float = Field(default=1e-4, gt=0, lt=1, description="Peak learning rate (AdamW, linear decay).")
    max_seq_len: int = Field(default=64, ge=8, le=512, description="Tokenizer truncation length.")
    data: str | None = Field(default=None, description="CSV/JSONL/Parquet file or saved datasets folder; None: tweet corpus.")
    text_column: str = Field(default="text", min_length=1, description="Column of the input text.")
    label_column: str = Field(default="label", min_length=1, description="Column of the class name.")
    labels: list[str] | None = Field(default=None, description="Label order; None: the data's labels, sorted.")
    base_model: str | None = Field(default=None, description="Local HF encoder folder; None: offline MiniLM-L6.")
    train_size: TeacherSize = Field(default=None, description="Train rows, count or share (corpus 6000; file: the rest).")
    test_size: TeacherSize = Field(default=None, description="Test rows, count or share (corpus 2000; file 0.1).")
    val_size: TeacherSize = Field(default=None, description="Validation rows, count or share (corpus 1000; file 0.1).")
    min_confidence: float = Field(default=0.7, ge=0, le=1, description="Corpus only: annotator confidence threshold.")
    seed: int = Field(default=0, ge=0, description="Seeds the split, the head init and the data order.")
    latency_runs: int = Field(default=50, ge=5, description="Timed runs per batch size.")

    @classmethod
    def quick_defaults(cls, **overrides: object) -> TeacherConfig:
        base: dict[str, object] = {"quick": True, "lr": 1e-3, "epochs": 2, "latency_runs": 5}
        if overrides.get("data") is None:  # a few hundred corpus rows; a file keeps its shares
            base.update(train_size=300, test_size=100, val_size=100)
        return cls(**{**base, **overrides})


def _common_words(texts: list[str], n: int) -> list[str]:
    counts = collections.Counter(w for t in texts for w in re.findall(r"[a-z']+", t.lower()))
    return [w for w, _ in counts.most_common(n)]


def load_teacher_data(cfg: TeacherConfig) -> tuple[data.Splits, DataSource]:
    """The checked, split data of `cfg` (all input errors surface here, before any model loads)."""
    return data.load_data(
        Path(cfg.data) if cfg.data else None, text_column=cfg.text_column, label_column=cfg.label_column,
        labels=cfg.labels, test_size=cfg.test_size, val_size=cfg.val_size, train_size=cfg.train_size,
        seed=cfg.seed, min_confidence=cfg.min_confidence,
    )


def base_model_name(cfg: TeacherConfig) -> str:
    if cfg.quick:
        return "tiny-random-bert"
    return str(Path(cfg.base_model).resolve()) if cfg.base_model else "sentence-transformers/all-MiniLM-L6-v2"


def build_teacher(cfg: TeacherConfig, splits: data.Splits) -> tuple[torch.nn.Module, object]:
    """The untrained teacher for `splits.labels`: tiny random BERT (quick) or the base encoder."""
    torch.manual_seed(cfg.seed)
    if cfg.quick:
        words = _common_words(list(splits.train["text"]), 800)
        model, tokenizer = models.tiny_teacher(words, labels=splits.labels, seed=cfg.seed)
    else:
        model, tokenizer = models.load_teacher_backbone(Path(cfg.base_model) if cfg.base_model else None,
                                                        splits.labels)
    limit = getattr(model.config, "max_position_embeddings", None)
    if limit is not None and cfg.max_seq_len > limit:
        raise InputError(f"--max-seq-len ({cfg.max_seq_len}) exceeds the base model's "
                         f"max_position_embeddings ({limit})")
    return model, tokenizer


class _BestEpoch:
    """on_epoch_end callback: score the validation split, keep the best epoch's weights."""

    def __init__(self, model: torch.nn.Module, tokenizer: object, validation: object, max_len: int) -> None:
        self.model, self.tokenizer, self.validation, self.max_len = model, tokenizer, validation, max_len
        self.scores: list[float] = []
        self.state: dict[str, torch.Tensor] | None = None

    def __call__(self, epoch: int) -> None:
        acc = evaluate.accuracy(self.model, self.tokenizer, self.validation, self.max_len,
                                desc=f"validation epoch {epoch + 1}")
        log.info("teacher epoch %d: validation accuracy %.4f", epoch + 1, acc)
        if not self.scores or acc > max(self.scores):
            self.state = copy.deepcopy(self.model.state_dict())
        self.scores.append(acc)

    @property
    def best_epoch(self) -> int:
        return self.scores.index(max(self.scores)) + 1


def run_teacher(cfg: TeacherConfig, repo: Path, model_name: str = "sentiment", version: str | None = None) -> tuple[Path, ModelCard]:
    """Check the data, fine-tune, select on validation, evaluate on test, measure and export."""
    splits, source = load_teacher_data(cfg)
    assert splits.validation is not None
    log.info("data %s: %d train / %d validation / %d test rows, labels %s, %s", source.path or "tweet corpus",
             len(splits.train), len(splits.validation), len(splits.test), list(splits.labels), splits.fingerprint)
    model, tokenizer = build_teacher(cfg, splits)
    train_set = train.tokenize(splits.train, tokenizer, cfg.max_seq_len)
    tcfg = train.TrainConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, max_seq_len=cfg.max_seq_len
    )
    select = _BestEpoch(model, tokenizer, splits.validation, cfg.max_seq_len)
    train.train(model, train_set, tokenizer, tcfg, desc="teacher", on_epoch_end=select)
    assert select.state is not None
    model.load_state_dict(select.state)
    acc = evaluate.accuracy(model, tokenizer, splits.test, cfg.max_seq_len, desc="teacher test")
    lat = evaluate.latency(model, tokenizer, list(splits.test["text"]), cfg.max_seq_len, runs=cfg.latency_runs)
    return export.export_version(
        model,
        tokenizer,
        repo=repo,
        model_name=model_name,
        version=version,
        card_fields={
            "kind": "teacher",
            "labels": list(splits.labels),
            "max_seq_len": cfg.max_seq_len,
            "accuracy": acc,
            "accuracy_seeds": [acc],
            "eval_examples": len(splits.test),
            "latency": lat,
            "measured_on": evaluate.machine(),
            "validation_accuracy": max(select.scores),
            "data_source": source,
        },
        lineage_fields={
            "data_fingerprint": splits.fingerprint,
            "config": {"recipe": "teacher", **cfg.model_dump(mode="json"), "best_epoch": select.best_epoch,
                       "selected_on": "validation"},
            "base_model": base_model_name(cfg),
        },
    )
