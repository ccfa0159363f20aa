"""The SQLite prediction cache, loading it from a batch job's output, and the Redis cache's fallback
(tests/integration/test_redis_cache.py runs it against a real Redis)."""

from __future__ import annotations

import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from serving.batch import shards as sh
from serving.batch.cache import (
    Breaker,
    PredictionCache,
    RedisPredictionCache,
    load_from,
    open_cache,
    prediction,
)
from serving.batch.job import OUTPUT_SCHEMA

NAMES = ["negative", "neutral", "positive"]


def test_lookup_is_by_model_version_and_exact_text(tmp_path: Path) -> None:
    cache = PredictionCache(tmp_path / "c.db")
    p = prediction("positive", NAMES, [0.1, 0.2, 0.7])
    assert cache.put_many("sentiment", "1", [(sh.input_key("great"), p)]) == 1
    assert cache.lookup_many("sentiment", "1", ["great", "Great", "great"]) == [p, None, p]
    assert cache.lookup_many("sentiment", "2", ["great"]) == [None]  # another version never answers
    assert cache.lookup_many("other", "1", ["great"]) == [None]
    assert cache.count() == 1 and cache.count("sentiment", "2") == 0


def test_prediction_has_the_online_shape_and_rounding() -> None:
    p = prediction("neutral", NAMES, [0.1234567891, 0.5, 0.3765432109])
    assert p == {"label": "neutral", "scores": {"negative": 0.123457, "neutral": 0.5, "positive": 0.376543}}
    with pytest.raises(ValueError):
        prediction("neutral", NAMES, [0.5, 0.5])  # a score per class, or nothing


def test_many_keys_and_replacing_entries(tmp_path: Path) -> None:
    cache = open_cache(tmp_path / "c.db")  # a path (not redis://) is SQLite
    texts = [f"text {i}" for i in range(1200)]  # over SQLite's 999 bound-parameter limit per query
    rows = [(sh.input_key(x), prediction("negative", NAMES, [1, 0, 0])) for x in texts]
    assert cache.put_many("m", "1", rows, chunk=500) == 1200
    newer = prediction("positive", NAMES, [0, 0, 1])
    cache.put_many("m", "1", [(sh.input_key("text 7"), newer)])
    got = cache.lookup_many("m", "1", texts)
    assert all(g is not None for g in got) and got[7] == newer and got[8]["label"] == "negative"
    assert cache.count("m", "1") == 1200


@pytest.mark.parametrize(
    ("events", "now", "allows"),
    [
        pytest.param([], 0.0, True, id="closed-at-start"),
        pytest.param([("failed", 10.0)], 12.0, False, id="open-within-retry"),  # 10 + 5 > 12
        pytest.param([("failed", 10.0)], 15.0, True, id="half-open-after-retry"),  # 10 + 5 = 15: try again
        pytest.param([("failed", 10.0), ("succeeded", 15.0)], 15.1, True, id="closed-after-success"),
        pytest.param([("failed", 10.0), ("failed", 15.0)], 19.0, False, id="reopened-by-a-second-failure"),
    ],
)
def test_breaker(events: list[tuple[str, float]], now: float, allows: bool) -> None:
    b = Breaker(retry_s=5.0)
    for what, t in events:
        if what == "failed":
            b.failed(t)
        else:
            b.succeeded()
    assert b.allows(now) is allows


def test_unreachable_redis_answers_not_cached_and_backs_off() -> None:
    with socket.socket() as s:  # a loopback port nobody listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    now = [100.0]
    cache = RedisPredictionCache(f"redis://127.0.0.1:{port}/0", retry_s=5.0, clock=lambda: now[0])
    assert isinstance(open_cache(f"redis://127.0.0.1:{port}/0"), RedisPredictionCache)
    calls: list[list[str]] = []
    real_mget = cache.client.mget
    cache.client.mget = lambda keys: calls.append(keys) or real_mget(keys)  # type: ignore[method-assign]
    assert cache.lookup_many("m", "1", ["a", "b"]) == [None, None]  # refused: a miss, not an error
    now[0] += 4.9
    assert cache.lookup_many("m", "1", ["a"]) == [None] and len(calls) == 1  # backing off: Redis not asked
    now[0] += 0.1
    assert cache.lookup_many("m", "1", ["a"]) == [None] and len(calls) == 2  # retried after 5 s
    with pytest.raises(Exception, match="(?i)connect"):  # a load must fail loudly
        cache.put_many("m", "1", [(sh.input_key("a"), prediction("neutral", NAMES, [0, 1, 0]))])


def _write_job(out: Path, texts: list[str], done: dict[int, int], shard_rows: int = 2) -> sh.Manifest:
    keys = [sh.input_key(x) for x in texts]
    m = sh.Manifest(model="sentiment", version="3", labels=NAMES, input="in.parquet", text_column="text",
                    input_fingerprint=sh.input_fingerprint(keys), num_rows=len(texts), shard_rows=shard_rows,
                    done=done)
    for s in m.shards:
        table = pa.table({"row_id": list(range(s.start, s.stop)), "input_key": keys[s.start: s.stop],
                          "model": ["sentiment"] * s.rows, "version": ["3"] * s.rows, "label": ["neutral"] * s.rows,
                          "scores": [[0.25, 0.5, 0.25]] * s.rows}).cast(OUTPUT_SCHEMA)
        pq.write_table(table, out / s.filename)
    sh.save_manifest(out, m)
    return m


def test_load_from_reads_only_finished_shards(tmp_path: Path) -> None:
    texts = ["a", "b", "c", "d", "e"]
    _write_job(tmp_path, texts, done={0: 2, 2: 1})  # shard 1 (c, d) was not finished
    cache = PredictionCache(tmp_path / "c.db")
    assert load_from(cache, tmp_path) == ("sentiment", "3", 3)
    got = cache.lookup_many("sentiment", "3", texts)
    assert [g is not None for g in got] == [True, True, False, False, True]
    assert got[0] == {"label": "neutral", "scores": {"negative": 0.25, "neutral": 0.5, "positive": 0.25}}


def test_load_from_a_folder_without_manifest_names_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has no _manifest.json"):
        load_from(PredictionCache(tmp_path / "c.db"), tmp_path)
