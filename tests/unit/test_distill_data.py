"""Bring-your-own data: reading every format, column/label checks, split sizes, determinism."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace

import datasets
import pandas as pd
import pytest

from distill import data
from distill.architectures import check_supported
from distill.config import StudentSpec
from distill.errors import InputError
from distill.import_model import check_labels, model_labels
from distill.parsing import parse_size

ROWS = pd.DataFrame({
    "review": [f"text number {i} is {'great' if i % 2 else 'awful'}" for i in range(40)],
    "stars": ["pos" if i % 2 else "neg" for i in range(40)],
})


# ---------------------------------------------------------------- formats


def _write(fmt: str, frame: pd.DataFrame, where: Path) -> Path:
    if fmt == "csv":
        path = where / "d.csv"
        frame.to_csv(path, index=False)
    elif fmt == "csv-latin1":
        path = where / "d.csv"
        frame.assign(review=frame["review"] + " café").to_csv(path, index=False, encoding="latin-1")
    elif fmt == "jsonl":
        path = where / "d.jsonl"
        frame.to_json(path, orient="records", lines=True)
    elif fmt == "parquet":
        path = where / "d.parquet"
        frame.to_parquet(path, index=False)
    elif fmt == "datasets":
        path = where / "saved"
        datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(path))
    elif fmt == "datasets-dict":
        path = where / "saved"
        half = len(frame) // 2
        datasets.DatasetDict({
            "train": datasets.Dataset.from_pandas(frame.iloc[:half], preserve_index=False),
            "test": datasets.Dataset.from_pandas(frame.iloc[half:], preserve_index=False),
        }).save_to_disk(str(path))
    else:
        raise AssertionError(fmt)
    return path


@pytest.mark.parametrize("fmt", ["csv", "csv-latin1", "jsonl", "parquet", "datasets", "datasets-dict"])
def test_every_format_reads_the_same_rows(fmt: str, tmp_path: Path) -> None:
    path = _write(fmt, ROWS, tmp_path)
    table = data.read_table(path)
    rows, labels = data.clean_rows(table, "review", "stars")
    assert labels == ("neg", "pos")
    assert len(rows) == len(ROWS)
    assert sorted(rows["label"].tolist()) == sorted([0, 1] * 20)
    if fmt == "csv-latin1":
        assert rows["text"].str.endswith("café").all()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        pytest.param("missing.csv", None, "does not exist", id="missing-file"),
        pytest.param("data.txt", "a,b\n1,2\n", "cannot tell the format", id="unknown-suffix"),
        pytest.param("data.parquet", "not parquet at all", "cannot read", id="unreadable-parquet"),
        pytest.param("data.jsonl", "{not json\n", "cannot read", id="unreadable-jsonl"),
    ],
)
def test_bad_files_are_refused_with_the_reason(name: str, content: str | None, message: str, tmp_path: Path) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputError, match=message):
        data.read_table(path)


# ---------------------------------------------------------------- column and label checks


def _frame(texts: list[object], labels: list[object]) -> pd.DataFrame:
    return pd.DataFrame({"text": texts, "label": labels})


@pytest.mark.parametrize(
    ("frame", "text_col", "label_col", "fixed", "message"),
    [
        pytest.param(_frame(["a", "b"], ["x", "y"]), "body", "label", None,
                     r"text column 'body' is not in .*columns present: \['text', 'label'\]", id="missing-text-column"),
        pytest.param(_frame(["a", "b"], ["x", "y"]), "text", "class", None,
                     r"label column 'class' is not in .*columns present: \['text', 'label'\]", id="missing-label-column"),
        # rows 1 and 3 are blank after stripping: the count and both rows are named.
        pytest.param(_frame(["a", "  ", "c", None], ["x", "y", "x", "y"]), "text", "label", None,
                     r"2 rows .* empty text in column 'text'; first: row 1: .*row 3", id="empty-text"),
        pytest.param(_frame(["a", "b", "c"], ["x", None, "y"]), "text", "label", None,
                     r"1 rows .* no label .*row 1", id="missing-label"),
        pytest.param(_frame(["a", "b", "c"], ["x", "y", "z"]), "text", "label", ["x", "y"],
                     r"1 rows .* label not in --labels \['x', 'y'\]; first: row 2: 'z'", id="label-outside-labels"),
        pytest.param(_frame(["a", "b", "c"], ["x", "x", "x"]), "text", "label", None,
                     r"need at least 2 classes.*\['x'\]", id="single-label"),
        # Two classes declared, one present: a classifier still cannot learn from that data.
        pytest.param(_frame(["a", "b"], ["x", "x"]), "text", "label", ["x", "y"],
                     r"every row .* has the label 'x'", id="single-label-present"),
        pytest.param(_frame(["a", "b"], ["x", "y"]), "text", "label", ["x", "x"],
                     r"--labels must be distinct", id="duplicate-fixed-labels"),
        pytest.param(_frame(["a", "b"], ["x", "y"]), "text", "label", ["x", ""],
                     r"--labels must be distinct non-empty", id="empty-fixed-label"),
    ],
)
def test_bad_rows_and_columns_are_refused(frame: pd.DataFrame, text_col: str, label_col: str,
                                          fixed: list[str] | None, message: str) -> None:
    with pytest.raises(InputError, match=message):
        data.clean_rows(frame, text_col, label_col, fixed)


@pytest.mark.parametrize(
    ("labels", "fixed", "order"),
    [
        pytest.param(["pos", "neg", "pos"], None, ("neg", "pos"), id="sorted-by-default"),
        pytest.param(["pos", "neg", "pos"], ["pos", "neg"], ("pos", "neg"), id="fixed-order-wins"),
        # A declared class may be absent from the rows (still 2 present here).
        pytest.param(["a", "b"], ["c", "b", "a"], ("c", "b", "a"), id="fixed-superset"),
        pytest.param([1, 0, 1], None, ("0", "1"), id="int-labels-as-names"),
        # pandas reads an int column with a gap as float: 1.0 still names class '1'.
        pytest.param([1.0, 0.0], None, ("0", "1"), id="float-ints-as-names"),
    ],
)
def test_label_order(labels: list[object], fixed: list[str] | None, order: tuple[str, ...]) -> None:
    rows, got = data.clean_rows(_frame([f"t{i}" for i in range(len(labels))], labels), "text", "label", fixed)
    assert got == order
    assert [got[i] for i in rows["label"]] == [data.label_text(x) for x in labels]


# ---------------------------------------------------------------- sizes and the split


@pytest.mark.parametrize(
    ("size", "n", "rows"),
    [
        pytest.param(None, 100, None, id="none-stays-none"),
        pytest.param(30, 100, 30, id="count"),
        pytest.param(0.1, 2000, 200, id="share"),
        pytest.param(0.001, 100, 1, id="tiny-share-at-least-one"),  # round(0.1) = 0 -> 1
        pytest.param(500.0, 1000, 500, id="whole-float-is-a-count"),
    ],
)
def test_resolve_size(size: float | int | None, n: int, rows: int | None) -> None:
    assert data.resolve_size(size, n, "test_size") == rows


@pytest.mark.parametrize(
    ("n", "sizes", "counts"),
    [
        pytest.param(2000, (0.1, 0.1, None), (200, 200, 1600), id="shares-and-rest-2k"),
        pytest.param(40000, (0.1, 0.1, None), (4000, 4000, 32000), id="shares-and-rest-40k"),
        pytest.param(9000, (2000, 1000, 6000), (2000, 1000, 6000), id="counts"),
        pytest.param(100, (10, 0, None), (10, 0, 90), id="no-validation"),
    ],
)
def test_split_counts(n: int, sizes: tuple, counts: tuple[int, int, int]) -> None:
    assert data.split_counts(n, *sizes) == counts


@pytest.mark.parametrize(
    ("n", "sizes"),
    [
        pytest.param(2000, (2000, 1000, 6000), id="recipe-counts-exceed-small-data"),
        pytest.param(10, (5, 5, None), id="no-rows-left-for-train"),
        pytest.param(10, (1.5, 0.1, None), id="share-above-one"),
    ],
)
def test_split_counts_refuse_what_does_not_fit(n: int, sizes: tuple) -> None:
    with pytest.raises(InputError, match="do not fit|must be a row count"):
        data.split_counts(n, *sizes)


def _split(frame: pd.DataFrame, seed: int = 0, val: float | int = 0.1) -> data.Splits:
    rows, labels = data.clean_rows(frame, "review", "stars")
    return data.split_rows(rows, rows.iloc[:0], labels, test_size=0.2, val_size=val, train_size=None, seed=seed,
                           params={"labels": list(labels)})


def test_split_is_deterministic_disjoint_and_fingerprinted() -> None:
    a, b = _split(ROWS), _split(ROWS)
    assert a.fingerprint == b.fingerprint and a.fingerprint.startswith("sha256:")
    assert list(a.test["text"]) == list(b.test["text"])
    assert a.validation is not None
    assert (len(a.test), len(a.validation), len(a.train)) == (8, 4, 28)
    parts = [set(a.test["text"]), set(a.validation["text"]), set(a.train["text"])]
    assert sum(len(p) for p in parts) == len(set.union(*parts)) == 40
    assert _split(ROWS, seed=1).fingerprint != a.fingerprint
    changed = ROWS.copy()
    changed.loc[0, "stars"] = "pos" if changed.loc[0, "stars"] == "neg" else "neg"
    assert _split(changed).fingerprint != a.fingerprint


def test_validation_is_carved_after_train_so_old_splits_keep_their_rows() -> None:
    """A split without validation (cards from before it existed) has the same test rows."""
    with_val, without = _split(ROWS, val=4), _split(ROWS, val=0)
    assert without.validation is None
    assert list(with_val.test["text"]) == list(without.test["text"])
    assert list(with_val.train["text"]) == list(without.train["text"])[: len(with_val.train)]


def test_duplicate_texts_never_straddle_splits() -> None:
    doubled = pd.concat([ROWS, ROWS.assign(stars="neg")], ignore_index=True)
    splits = _split(doubled)
    assert len(splits.test) + len(splits.train) + len(splits.validation or []) == 40


def test_load_data_records_the_source_and_rebuilds_from_it(tmp_path: Path) -> None:
    path = _write("csv", ROWS, tmp_path)
    splits, source = data.load_data(path, text_column="review", label_column="stars", labels=["pos", "neg"])
    assert (source.format, source.text_column, source.label_column, source.labels) == ("csv", "review", "stars",
                                                                                     ["pos", "neg"])
    assert source.path == str(path.resolve())
    assert source.split == {"test_size": 4, "val_size": 4, "train_size": 32, "seed": 0}
    again = data.splits_from_card(source)
    assert again.fingerprint == splits.fingerprint
    assert again.labels == ("pos", "neg")


# ---------------------------------------------------------------- small pure tables


@pytest.mark.parametrize(
    ("model_type", "spec", "error"),
    [
        pytest.param("bert", {"layers": [0], "hidden_size": 16, "prune_vocab": True}, None, id="bert-all"),
        pytest.param("roberta", {"layers": [0, 1]}, None, id="roberta-layers"),
        pytest.param("distilbert", {"layers": [1]}, None, id="distilbert-layers"),
        pytest.param("distilbert", {"layers": [0], "hidden_size": 16},
                     r"\['width'\] not supported for a 'distilbert' teacher", id="distilbert-width"),
        pytest.param("roberta", {"layers": [0], "prune_vocab": True},
                     r"\['prune_vocab'\] not supported for a 'roberta' teacher", id="roberta-prune"),
        pytest.param("deberta-v2", {"layers": [0]}, r"\['layers'\] not supported for a 'deberta-v2'.*layers: "
                     r"\['bert', 'distilbert', 'roberta'\]", id="deberta-layers"),
    ],
)
def test_student_operations_per_architecture(model_type: str, spec: dict, error: str | None) -> None:
    if error is None:
        check_supported(model_type, StudentSpec(**spec))
    else:
        with pytest.raises(InputError, match=error):
            check_supported(model_type, StudentSpec(**spec))


@pytest.mark.parametrize(
    ("new", "existing", "error"),
    [
        pytest.param(["a", "b"], None, None, id="new-model"),
        pytest.param(["a", "b"], ("1", ["a", "b"]), None, id="same-labels"),
        pytest.param(["b", "a"], ("2", ["a", "b"]), r"\['b', 'a'\] differ from version 2 .* has \['a', 'b'\]",
                     id="same-labels-other-order"),
        pytest.param(["a", "b", "c"], ("1", ["a", "b"]), r"\['a', 'b', 'c'\] differ .* \['a', 'b'\]", id="extra-label"),
    ],
)
def test_import_label_check(new: list[str], existing: tuple[str, list[str]] | None, error: str | None) -> None:
    if error is None:
        check_labels(new, existing, "topics")
    else:
        with pytest.raises(InputError, match=error):
            check_labels(new, existing, "topics")


def test_model_labels_from_id2label() -> None:
    assert model_labels(SimpleNamespace(id2label={1: "pos", 0: "neg"}, num_labels=2)) == ["neg", "pos"]
    with pytest.raises(InputError, match="no usable id2label"):
        model_labels(SimpleNamespace(id2label={0: "only"}, num_labels=1))


@pytest.mark.parametrize(
    ("text", "value"),
    [pytest.param("500", 500, id="count"), pytest.param("0.1", 0.1, id="share"), pytest.param("2e3", 2000, id="sci")],
)
def test_parse_size(text: str, value: float | int) -> None:
    assert parse_size(text) == value and type(parse_size(text)) is type(value)


@pytest.mark.parametrize("text", ["0", "1.5", "-3", "ten"])
def test_parse_size_refuses(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_size(text)
