"""The teacher recipe: fine-tune MiniLM-L6 on the tweet corpus and export it as a version."""

from __future__ import annotations

import collections
import re
from pathlib import Path

import torch
from pydantic import BaseModel, ConfigDict, Field

from distill import data, evaluate, export, models, train
from distilserve.core.card import ModelCard


class TeacherConfig(BaseModel):
    """Everything that decides the teacher's weights; hashed into its lineage."""

    model_config = ConfigDict(extra="forbid")

    quick: bool = Field(default=False, description="Tiny random BERT on a few hundred rows (tests, demos).")
    epochs: int = Field(default=1, ge=1, le=20, description="Passes over the train split.")
    batch_size: int = Field(default=32, ge=1, le=1024, description="Training batch size.")
    lr: float = Field(default=1e-4, gt=0, lt=1, description="Peak learning rate (AdamW, linear decay).")
    max_seq_len: int = Field(default=64, ge=8, le=512, description="Tokenizer truncation length.")
    train_size: int = Field(default=6000, ge=10, description="Confident unique rows to train on.")
    test_size: int = Field(default=2000, ge=10, description="Held-out rows for accuracy.")
    min_confidence: float = Field(default=0.7, ge=0, le=1, description="Annotator confidence threshold.")
    seed: int = Field(default=0, ge=0, description="Seeds the split, the head init and the data order.")
    latency_runs: int = Field(default=50, ge=5, description="Timed runs per batch size.")

    @classmethod
    def quick_defaults(cls, **overrides: object) -> TeacherConfig:
        base = {"quick": True, "train_size": 300, "test_size": 100, "lr": 1e-3, "epochs": 2, "latency_runs": 5}
        return cls(**{**base, **overrides})


def _common_words(texts: list[str], n: int) -> list[str]:
    counts = collections.Counter(w for t in texts for w in re.findall(r"[a-z']+", t.lower()))
    return [w for w, _ in counts.most_common(n)]


def build_teacher(cfg: TeacherConfig) -> tuple[torch.nn.Module, object, data.Splits]:
    splits = data.load_splits(
        min_confidence=cfg.min_confidence, test_size=cfg.test_size, train_size=cfg.train_size, seed=cfg.seed
    )
    torch.manual_seed(cfg.seed)
    if cfg.quick:
        model, tokenizer = models.tiny_teacher(_common_words(list(splits.train["text"]), 800), seed=cfg.seed)
    else:
        model, tokenizer = models.load_teacher_backbone()
    return model, tokenizer, splits


def run_teacher(cfg: TeacherConfig, repo: Path, model_name: str = "sentiment", version: str | None = None) -> tuple[Path, ModelCard]:
    """Fine-tune, evaluate, measure and export; returns the version folder and its card."""
    model, tokenizer, splits = build_teacher(cfg)
    train_set = train.tokenize(splits.train, tokenizer, cfg.max_seq_len)
    tcfg = train.TrainConfig(
        epochs=cfg.epochs, batch_size=cfg.batch_size, lr=cfg.lr, seed=cfg.seed, max_seq_len=cfg.max_seq_len
    )
    train.train(model, train_set, tokenizer, tcfg, desc="teacher")
    acc = evaluate.accuracy(model, tokenizer, splits.test, cfg.max_seq_len)
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
        },
        lineage_fields={
            "data_fingerprint": splits.fingerprint,
            "config": {"recipe": "teacher", **cfg.model_dump()},
            "base_model": "tiny-random-bert" if cfg.quick else "sentence-transformers/all-MiniLM-L6-v2",
        },
    )
