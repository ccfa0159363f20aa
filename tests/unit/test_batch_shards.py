"""Pure pieces of a resumable batch job: keys, shard plan, manifest, inputs."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd
import pytest

from serving.batch import shards as sh
from serving.batch.job import read_texts


@pytest.mark.parametrize(
    ("num_rows", "shard_rows", "expected"),
    [
        pytest.param(0, 10, [], id="empty-input-no-shards"),
        pytest.param(5, 10, [(0, 5)], id="fewer-rows-than-a-shard"),
        pytest.param(10, 10, [(0, 10)], id="exactly-one-shard"),
        pytest.param(11, 10, [(0, 10), (10, 11)], id="last-shard-short"),  # 11 = 10 + 1
        pytest.param(7, 3, [(0, 3), (3, 6), (6, 7)], id="three-shards"),  # 7 = 3 + 3 + 1
        pytest.param(3, 1, [(0, 1), (1, 2), (2, 3)], id="one-row-each"),
    ],
)
def test_plan_shards_table(num_rows: int, shard_rows: int, expected: list[tuple[int, int]]) -> None:
    plan = sh.plan_shards(num_rows, shard_rows)
    assert [(s.start, s.stop) for s in plan] == expected
    assert [s.index for s in plan] == list(range(len(expected)))
    assert sum(s.rows for s in plan) == num_rows  # every row exactly once


def test_plan_shards_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="shard_rows must be >= 1"):
        sh.plan_shards(10, 0)
    with pytest.raises(ValueError, match="num_rows"):
        sh.plan_shards(-1, 10)


def test_input_key_is_sha256_of_utf8_text() -> None:
    assert sh.input_key("héllo") == hashlib.sha256("héllo".encode()).hexdigest()
    assert sh.input_key("a") != sh.input_key("a ")  # no normalisation: exact text
    keys = [sh.input_key(t) for t in ("a", "b")]
    assert sh.input_fingerprint(keys) != sh.input_fingerprint(keys[::-1])  # order matters (row ids)
    assert sh.input_fingerprint(keys) != sh.input_fingerprint(keys[:1])


def _manifest(**kw: object) -> sh.Manifest:
    base = dict(model="sentiment", version="1", labels=["negative", "neutral", "positive"], input="x.parquet",
                text_column="text", input_fingerprint="sha256:ab", num_rows=25, shard_rows=10)
    return sh.Manifest(**{**base, **kw})


def test_pending_shards_skips_only_finished_shards_with_files(tmp_path: Path) -> None:
    m = _manifest(done={0: 10, 1: 10})
    (tmp_path / "shard-000000.parquet").write_bytes(b"x")
    # shard 1 is listed but its file is gone; shard 2's file exists but the manifest does not
    # list it (killed between rename and manifest write): both must run again.
    (tmp_path / "shard-000002.parquet").write_bytes(b"x")
    assert [s.index for s in sh.pending_shards(m, tmp_path)] == [1, 2]
    assert not m.complete and m.rows_done == 20


def test_pending_shards_reruns_a_shard_recorded_with_the_wrong_row_count(tmp_path: Path) -> None:
    m = _manifest(done={0: 10, 1: 10, 2: 4})  # shard 2 has 5 rows (25 = 10 + 10 + 5)
    for i in range(3):
        (tmp_path / f"shard-{i:06d}.parquet").write_bytes(b"x")
    assert [s.index for s in sh.pending_shards(m, tmp_path)] == [2]


def test_manifest_round_trip_and_atomic_write_leave_no_temp_file(tmp_path: Path) -> None:
    m = _manifest(done={0: 10})
    sh.save_manifest(tmp_path, m)
    assert sh.load_manifest(tmp_path) == m
    assert [p.name for p in tmp_path.iterdir()] == [sh.MANIFEST]
    assert json.loads((tmp_path / sh.MANIFEST).read_text())["done"] == {"0": 10}
    assert sh.load_manifest(tmp_path / "nowhere") is None


def test_remove_leftovers_deletes_only_temporary_files(tmp_path: Path) -> None:
    (tmp_path / ".shard-000003.parquet.tmp").write_bytes(b"half")
    (tmp_path / "shard-000001.parquet").write_bytes(b"whole")
    gone = sh.remove_leftovers(tmp_path)
    assert [p.name for p in gone] == [".shard-000003.parquet.tmp"]
    assert [p.name for p in tmp_path.iterdir()] == ["shard-000001.parquet"]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        pytest.param({"version": "2"}, "version", id="other-version"),
        pytest.param({"input_fingerprint": "sha256:cd"}, "input_fingerprint", id="other-input"),
        pytest.param({"shard_rows": 5}, "shard_rows", id="other-shard-size"),
        pytest.param({"text_column": "body"}, "text_column", id="other-column"),
    ],
)
def test_restart_with_a_different_job_is_refused_naming_the_field(change: dict, field: str) -> None:
    with pytest.raises(ValueError, match=f"{field}: "):
        _manifest().check_same_job(_manifest(**change))
    _manifest(done={0: 10}).check_same_job(_manifest())  # progress is not a difference


TEXTS = ["good, very good", "bad\nworse", 'a "quoted" one', "ünïcode"]


@pytest.mark.parametrize("fmt", ["parquet", "csv", "jsonl", "datasets", "datasetdict"])
def test_read_texts_every_input_format_keeps_rows_in_order(tmp_path: Path, fmt: str) -> None:
    frame = pd.DataFrame({"id": range(len(TEXTS)), "body": TEXTS})
    path = tmp_path / f"in.{fmt}"
    split = None
    if fmt == "parquet":
        frame.to_parquet(path)
    elif fmt == "csv":
        frame.to_csv(path, index=False)
    elif fmt == "jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        import datasets

        ds = datasets.Dataset.from_pandas(frame, preserve_index=False)
        if fmt == "datasetdict":
            ds, split = datasets.DatasetDict({"train": ds}), "train"
        ds.save_to_disk(str(path))
    assert read_texts(path, "body", split) == TEXTS
    with pytest.raises(ValueError, match="no column 'text'"):
        read_texts(path, "text", split)


def test_read_texts_refuses_null_texts_and_unknown_formats(tmp_path: Path) -> None:
    pd.DataFrame({"text": ["a", None]}).to_parquet(tmp_path / "n.parquet")
    with pytest.raises(ValueError, match="1 rows of 'text'.* are null"):
        read_texts(tmp_path / "n.parquet")
    (tmp_path / "x.xlsx").write_bytes(b"")
    with pytest.raises(ValueError, match="not parquet"):
        read_texts(tmp_path / "x.xlsx")
