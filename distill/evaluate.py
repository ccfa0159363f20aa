"""Accuracy on held-out data and latency at batch 1 and N: the numbers behind a card."""

from __future__ import annotations

import platform
import time
from collections.abc import Callable, Sequence

import datasets
import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from distill import progress
from distilserve.core.card import LatencyStats
from distilserve.core.stats import percentile


@torch.inference_mode()
def logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_len: int,
    batch_size: int = 64,
    desc: str = "predict",
) -> np.ndarray:
    """Raw (pre-softmax) logits, shape [len(texts), num_labels], float32 (progress on stderr)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    with progress.step(desc, len(texts), "texts") as bar:
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i : i + batch_size]), truncation=True, max_length=max_len, padding=True,
                            return_tensors="pt")
            out.append(model(**{k: v.to(device) for k, v in enc.items()}).logits.float().cpu().numpy())
            bar.update(len(out[-1]))
    return np.concatenate(out) if out else np.zeros((0, model.config.num_labels), dtype=np.float32)


def predict(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    max_len: int,
    batch_size: int = 64,
    desc: str = "predict",
) -> np.ndarray:
    """Class probabilities, shape [len(texts), num_labels]."""
    raw = logits(model, tokenizer, texts, max_len, batch_size, desc=desc)
    return torch.softmax(torch.from_numpy(raw), dim=-1).numpy()


def accuracy(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, ds: datasets.Dataset, max_len: int,
    desc: str = "accuracy",
) -> float:
    """Share of `ds` rows whose argmax prediction equals `label`."""
    probs = predict(model, tokenizer, list(ds["text"]), max_len, desc=desc)
    return float((probs.argmax(axis=1) == np.asarray(ds["label"])).mean())


def time_batches(
    fn: Callable[[list[str]], object],
    texts: Sequence[str],
    batch_sizes: tuple[int, ...] = (1, 32),
    runs: int = 50,
    warmup: int = 3,
) -> list[LatencyStats]:
    """p50/p99 of `fn(batch)` per batch size.

    Every batch draws different texts (cycling through `texts`) so a tokenizer cannot cache
    its way to a flattering number.
    """
    texts = list(texts)
    stats = []
    for bs in batch_sizes:
        progress.log.info("latency: batch %d, %d warm-up + %d timed runs", bs, warmup, runs)
        times = []
        for i in range(warmup + runs):
            start = (i * bs) % max(1, len(texts) - bs)
            batch = texts[start : start + bs]
            t0 = time.perf_counter()
            fn(batch)
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
        stats.append(LatencyStats(batch_size=bs, p50_ms=round(percentile(times, 50), 3),
                                  p99_ms=round(percentile(times, 99), 3), runs=runs))
    return stats


def latency(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: list[str],
    max_len: int,
    batch_sizes: tuple[int, ...] = (1, 32),
    runs: int = 50,
    warmup: int = 3,
) -> list[LatencyStats]:
    """p50/p99 of tokenize + forward, per batch size, on this machine's CPU/GPU as is."""
    model.eval()
    device = next(model.parameters()).device

    @torch.inference_mode()
    def forward(batch: list[str]) -> None:
        enc = tokenizer(batch, truncation=True, max_length=max_len, padding=True, return_tensors="pt")
        model(**{k: v.to(device) for k, v in enc.items()})
        if device.type == "cuda":
            torch.cuda.synchronize()

    return time_batches(forward, texts, batch_sizes, runs, warmup)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def machine() -> str:
    """Short description of where latency was measured."""
    dev = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    return f"{platform.machine()} {dev}, torch threads={torch.get_num_threads()}, torch {torch.__version__}"
