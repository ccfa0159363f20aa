"""One `accelerate` training loop, for teacher fine-tuning and for distillation."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import datasets
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import (
    DataCollatorWithPadding,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    get_linear_schedule_with_warmup,
)

from distill import progress

# (model, batch) -> scalar loss. Batches hold input_ids, attention_mask, labels and any
# extra columns the dataset carries (e.g. cached teacher logits).
StepLoss = Callable[[PreTrainedModel, dict[str, torch.Tensor]], torch.Tensor]


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 1
    batch_size: int = 32
    lr: float = 5e-5
    weight_decay: float = 0.01
    warmup_ratio: float = 0.1
    seed: int = 0
    max_seq_len: int = 64


def tokenize(ds: datasets.Dataset, tokenizer: PreTrainedTokenizerBase, max_len: int) -> datasets.Dataset:
    """Tokenized copy of `ds` (text -> input_ids/attention_mask, label -> labels)."""

    def enc(batch: dict) -> dict:
        return tokenizer(batch["text"], truncation=True, max_length=max_len)

    out = ds.map(enc, batched=True, remove_columns=["text"], desc="tokenize")
    if "label" in out.column_names:
        out = out.rename_column("label", "labels")
    return out


def cross_entropy(model: PreTrainedModel, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Plain fine-tuning loss (the teacher's)."""
    out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return torch.nn.functional.cross_entropy(out.logits, batch["labels"], ignore_index=-100)


def train(
    model: PreTrainedModel,
    train_set: datasets.Dataset,
    tokenizer: PreTrainedTokenizerBase,
    cfg: TrainConfig,
    step_loss: StepLoss = cross_entropy,
    extra_params: Iterable[torch.nn.Parameter] = (),
    desc: str = "train",
    on_epoch_end: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Train `model` in place on an already tokenized `train_set`; returns simple stats.

    `on_epoch_end(epoch)` runs after each epoch with the model in eval mode (e.g. to score the
    validation split and keep the best epoch); training resumes in train mode after it.
    """
    set_seed(cfg.seed)
    accelerator = Accelerator(cpu=not torch.cuda.is_available())
    loader = DataLoader(
        train_set.with_format("torch"),
        batch_size=cfg.batch_size,
        shuffle=True,
        collate_fn=DataCollatorWithPadding(tokenizer),
        generator=torch.Generator().manual_seed(cfg.seed),
    )
    params = [p for p in model.parameters() if p.requires_grad] + list(extra_params)
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = max(1, cfg.epochs * len(loader))
    scheduler = get_linear_schedule_with_warmup(optimizer, int(cfg.warmup_ratio * total), total)
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    model.train()
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        with progress.step(f"{desc} epoch {epoch + 1}/{cfg.epochs}", len(train_set), "examples") as bar:
            for batch in loader:
                loss = step_loss(model, batch)
                accelerator.backward(loss)
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                losses.append(float(loss.detach()))
                bar.update(len(batch["input_ids"]))
                bar.set_postfix(loss=f"{losses[-1]:.4f}", refresh=False)
        if on_epoch_end is not None:
            model.eval()
            on_epoch_end(epoch)
            model.train()
    model.eval()
    tail = losses[-20:] or [float("nan")]
    return {"steps": float(len(losses)), "final_loss": sum(tail) / len(tail)}
