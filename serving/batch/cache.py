"""The prediction cache: batch-job predictions keyed by (model, version, sha256 of the input).

SQLite (WAL: the ingress reads while `batch load-cache` writes) by default; Redis when the
location is a `redis://` URL (one cache shared by ingress replicas on every node). Keys carry the version,
so a cached answer can only be served for the version the router chose — and the router
chooses only live versions.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Protocol

from serving.batch import shards as sh

log = logging.getLogger(__name__)

Prediction = dict  # {"label": str, "scores": {label: p}} — one /v1/predict prediction


class Cache(Protocol):
    def lookup_many(self, model: str, version: str, texts: list[str]) -> list[Prediction | None]: ...

    def put_many(self, model: str, version: str, rows: Iterable[tuple[str, Prediction]]) -> int: ...

    def close(self) -> None: ...


def _encode(pred: Prediction) -> str:
    return json.dumps(pred, separators=(",", ":"))


def prediction(label: str, names: list[str], scores: Iterable[float]) -> Prediction:
    """The /v1/predict form of one prediction (scores rounded as the online path rounds them)."""
    return {"label": label, "scores": {n: round(float(p), 6) for n, p in zip(names, scores, strict=True)}}


def iter_job_predictions(output_dir: Path) -> tuple[sh.Manifest, Iterator[tuple[str, Prediction]]]:
    """(manifest, (input_key, prediction) of every finished shard) of a batch job's output."""
    import pyarrow.parquet as pq

    out = Path(output_dir)
    manifest = sh.load_manifest(out)
    if manifest is None:
        raise FileNotFoundError(f"output: {out} has no {sh.MANIFEST}; is it a `distilserve batch run` output?")

    def rows() -> Iterator[tuple[str, Prediction]]:
        for shard in manifest.shards:
            if manifest.done.get(shard.index) != shard.rows:
                continue  # unfinished: its file may be absent or from an older run
            table = pq.read_table(out / shard.filename, columns=["input_key", "label", "scores"])
            for key, label, scores in zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True):
                yield key, prediction(label, manifest.labels, scores)

    return manifest, rows()


def load_from(cache: Cache, output_dir: Path) -> tuple[str, str, int]:
    """Load a job's finished shards into `cache`; returns (model, version, rows loaded)."""
    manifest, rows = iter_job_predictions(output_dir)
    return manifest.model, manifest.version, cache.put_many(manifest.model, manifest.version, rows)


class PredictionCache:
    """SQLite cache; safe to share between threads (one connection per thread)."""

    def __init__(self, path: str | Path, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.timeout = timeout
        self._local = threading.local()
        with self._conn() as db:
            db.execute("CREATE TABLE IF NOT EXISTS predictions (model TEXT NOT NULL, version TEXT NOT NULL, "
                       "input_hash TEXT NOT NULL, prediction TEXT NOT NULL, "
                       "PRIMARY KEY (model, version, input_hash)) WITHOUT ROWID")

    def _conn(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=self.timeout, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            self._local.db = db
        return db

    def lookup_many(self, model: str, version: str, texts: list[str]) -> list[Prediction | None]:
        keys = [sh.input_key(t) for t in texts]
        found: dict[str, str] = {}
        for i in range(0, len(keys), 500):  # stay under SQLite's bound-parameter limit
            part = keys[i: i + 500]
            marks = ",".join("?" * len(part))
            found.update(self._conn().execute(
                f"SELECT input_hash, prediction FROM predictions WHERE model=? AND version=? AND input_hash IN ({marks})",
                [model, version, *part]).fetchall())
        return [json.loads(found[k]) if k in found else None for k in keys]

    def put_many(self, model: str, version: str, rows: Iterable[tuple[str, Prediction]], chunk: int = 5000) -> int:
        db, n, buf = self._conn(), 0, []
        for key, pred in rows:
            buf.append((model, version, key, _encode(pred)))
            if len(buf) >= chunk:
                n += self._insert(db, buf)
                buf = []
        return n + (self._insert(db, buf) if buf else 0)

    @staticmethod
    def _insert(db: sqlite3.Connection, rows: list[tuple]) -> int:
        with db:  # one transaction per chunk: readers never see half a chunk
            db.executemany("INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?)", rows)
        return len(rows)

    def count(self, model: str | None = None, version: str | None = None) -> int:
        sql, args = "SELECT COUNT(*) FROM predictions WHERE 1=1", []
        for col, val in (("model", model), ("version", version)):
            if val is not None:
                sql, args = sql + f" AND {col}=?", [*args, val]
        return int(self._conn().execute(sql, args).fetchone()[0])

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None


class Breaker:
    """Pure: after a failure, skip the backend for `retry_s` (then try once more).

    A cache that is down must cost a request nothing: without this, every lookup would wait
    for a connect timeout before falling back to the model.
    """

    def __init__(self, retry_s: float) -> None:
        self.retry_s = retry_s
        self.open_until = float("-inf")

    def allows(self, now: float) -> bool:
        return now >= self.open_until

    def failed(self, now: float) -> None:
        self.open_until = now + self.retry_s

    def succeeded(self) -> None:
        self.open_until = float("-inf")


class RedisPredictionCache:
    """The same cache in Redis: key `distilserve:pred:<model>:<version>:<input_hash>` -> JSON.

    One Redis serves every ingress replica on every node. Lookups never fail: while Redis is
    unreachable (or slower than `timeout_s`) they answer "not cached" at once, so the caller
    predicts with the model, and Redis is tried again after `retry_s`. Writes (`put_many`,
    a batch load) raise: an operator loading the cache must know it did not load.
    """

    def __init__(self, url: str, ttl_s: int | None = None, timeout_s: float = 0.5, retry_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        import redis

        self._errors: tuple[type[Exception], ...] = (redis.RedisError, OSError)
        self.client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        self.ttl_s = ttl_s
        self.breaker = Breaker(retry_s)
        self._clock = clock
        self._where = self.client.connection_pool.connection_kwargs.get("host", url)

    def _key(self, model: str, version: str, key: str) -> str:
        return f"distilserve:pred:{model}:{version}:{key}"

    def lookup_many(self, model: str, version: str, texts: list[str]) -> list[Prediction | None]:
        if not self.breaker.allows(self._clock()):
            return [None] * len(texts)
        try:
            raw = self.client.mget([self._key(model, version, sh.input_key(t)) for t in texts])
        except self._errors as exc:
            self.breaker.failed(self._clock())
            log.warning("prediction cache at %s unreachable (%s); answering from the model for %.0f s",
                        self._where, exc, self.breaker.retry_s)
            return [None] * len(texts)
        self.breaker.succeeded()
        return [json.loads(v) if v is not None else None for v in raw]

    def put_many(self, model: str, version: str, rows: Iterable[tuple[str, Prediction]], chunk: int = 5000) -> int:
        n, pipe = 0, self.client.pipeline(transaction=False)
        for key, pred in rows:
            pipe.set(self._key(model, version, key), _encode(pred), ex=self.ttl_s)
            n += 1
            if n % chunk == 0:
                pipe.execute()
        pipe.execute()
        return n

    def count(self, model: str | None = None, version: str | None = None) -> int:
        """Entries of `model`/`version` (a SCAN: for tests and operators, not the request path)."""
        pattern = self._key(model or "*", version or "*", "*")
        return sum(1 for _ in self.client.scan_iter(match=pattern, count=1000))

    def close(self) -> None:
        self.client.close()


def open_cache(location: str | Path) -> Cache:
    """A `redis://` / `rediss://` / `unix://` URL opens Redis; anything else is a SQLite file."""
    loc = str(location)
    if loc.startswith(("redis://", "rediss://", "unix://")):
        return RedisPredictionCache(loc)
    return PredictionCache(loc)
