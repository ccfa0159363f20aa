"""One process's connection to the registry file, and the transactions every store method uses."""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from serving.registry.schema import SCHEMA_VERSION, connect, user_version

Clock = Callable[[], float]


class Database:
    """A connection plus transaction helpers; the stores (`Registry` and its mixins) build on it."""

    def __init__(self, path: str | Path, *, timeout: float = 30.0, clock: Clock = time.time) -> None:
        self.path = Path(path).absolute()
        self.timeout = timeout
        self._clock = clock
        # RLock: a store method may call another inside `transaction()` on the same thread.
        self._lock = threading.RLock()
        self._depth = 0
        self._pid = os.getpid()
        self._conn: sqlite3.Connection | None = connect(self.path, timeout)

    # A Registry shipped to another process (Ray pickles deployment arguments) reopens the file
    # there; a connection cannot cross a process boundary.
    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path, "timeout": self.timeout, "clock": self._clock}

    def __setstate__(self, state: dict[str, Any]) -> None:
        Database.__init__(self, state["path"], timeout=state["timeout"], clock=state["clock"])

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _connection(self) -> sqlite3.Connection:
        if self._pid != os.getpid():
            # Forked: SQLite forbids using the parent's connection in the child. Abandon it
            # (closing it here could release the parent's locks) and open our own.
            self._conn, self._pid = connect(self.path, self.timeout), os.getpid()
        if self._conn is None:
            raise ValueError(f"registry {str(self.path)!r} is closed")
        return self._conn

    def data_version(self) -> int:
        """SQLite's PRAGMA data_version: changes whenever *another* connection commits.

        A reader polling for changes made elsewhere compares it between polls instead of
        rereading tables (its own writes do not change it).
        """
        with self._lock:
            return int(self._connection().execute("PRAGMA data_version").fetchone()[0])

    @property
    def schema_version(self) -> int:
        """PRAGMA user_version of the file (equals SCHEMA_VERSION once opened)."""
        with self._read() as conn:
            return user_version(conn)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """Group several writes atomically: `with reg.transaction(): reg.set_traffic(...); ...`.

        Takes the write lock at once (BEGIN IMMEDIATE). Store methods called inside join this
        transaction; an exception escaping the block rolls all of it back. Keep it short: other
        processes wait for the lock.
        """
        with self._begin("BEGIN IMMEDIATE") as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # A deferred transaction gives several SELECTs one consistent snapshot without blocking writers.
        with self._begin("BEGIN") as conn:
            yield conn

    @contextmanager
    def _begin(self, begin: str) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self._connection()
            if self._depth:
                # Nested: join the outer transaction (which is IMMEDIATE when it was opened for
                # writing; a write inside an outer read would upgrade and may wait on busy_timeout).
                self._depth += 1
                try:
                    yield conn
                finally:
                    self._depth -= 1
                return
            conn.execute(begin)
            self._depth = 1
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            finally:
                self._depth = 0

    def _now(self) -> float:
        return float(self._clock())


__all__ = ["Database", "SCHEMA_VERSION"]
