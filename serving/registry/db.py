"""One process's handle on the registry database, and the transactions every store method uses.

Two backends behind one engine (SQLAlchemy Core): a SQLite file (the embedded default; every
process on the machine opens it) and PostgreSQL (`postgresql://user@host:5432/db`, for a
cluster). Their semantics are made the same:

- Writers are serialised from their first statement: SQLite takes the write lock up front
  (`BEGIN IMMEDIATE`, waiting up to `timeout`), PostgreSQL locks the one `registry_revision`
  row first (waiting up to `timeout` via lock_timeout). Everything a write transaction reads
  after that is the latest committed state, so read-check-write sequences (one active
  rollout, optimistic `rev` checks) hold on both.
- Reads see one snapshot (a deferred SQLite transaction; PostgreSQL REPEATABLE READ, read only).
- Every control-plane write bumps `registry_revision` in its own transaction: `data_version()`
  is one cheap query that tells a poller whether to reread.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import ArgumentError

from serving.registry import schema
from serving.registry.errors import RegistryError
from serving.registry.schema import SCHEMA_VERSION, migrate

Clock = Callable[[], float]
URL_EXAMPLE = "'postgresql://distilserve@db.internal:5432/distilserve'"


def is_url(location: str | Path) -> bool:
    return isinstance(location, str) and "://" in location


def engine_url(location: str | Path) -> sa.URL:
    """The SQLAlchemy URL of a registry location: a file path (SQLite) or a database URL.

    Raises:
        RegistryError: a URL of another database, or one that does not parse.
    """
    if not is_url(location):
        return sa.URL.create("sqlite", database=str(Path(location).absolute()))
    try:
        url = sa.make_url(str(location))
    except (ArgumentError, ValueError) as exc:  # ValueError: e.g. a port that is not a number
        raise RegistryError(f"registry URL {location!r} does not parse ({exc}); e.g. {URL_EXAMPLE}") from None
    if url.drivername in ("postgresql", "postgres", "postgresql+psycopg"):
        return url.set(drivername="postgresql+psycopg")
    if url.drivername == "sqlite" and url.database:
        return url.set(database=str(Path(url.database).absolute()))
    raise RegistryError(
        f"registry {url.render_as_string(hide_password=True)!r} must be a SQLite file path or a "
        f"PostgreSQL URL like {URL_EXAMPLE}"
    )


def _sqlite_engine(url: sa.URL, timeout: float) -> Engine:
    assert url.database is not None
    Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    # check_same_thread=False: the Database serialises access with its own lock.
    engine = sa.create_engine(
        url, connect_args={"timeout": timeout, "check_same_thread": False}, pool_size=1, max_overflow=4
    )

    @event.listens_for(engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        # The sqlite3 module's own implicit BEGINs are off; `_begin` below sends ours.
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise RegistryError(
                    f"registry {url.database!r} could not switch to WAL (journal_mode={mode!r}); use a local file"
                )
            # NORMAL in WAL mode: a killed process loses nothing committed and power loss leaves
            # the file consistent (possibly without the last commits). FULL would fsync every row.
            cur.execute("PRAGMA synchronous = NORMAL")
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # Writers take the write lock at once: two processes never deadlock upgrading a read lock.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("registry_write") else "BEGIN")

    return engine


def _postgresql_engine(url: sa.URL, timeout: float) -> Engine:
    return sa.create_engine(
        url,
        # A connection that died with the server (restart, failover) is noticed at checkout and
        # replaced: the next transaction after a restart works instead of failing forever.
        pool_pre_ping=True,
        pool_size=1,
        max_overflow=4,
        connect_args={
            "connect_timeout": max(1, int(timeout)),
            "options": f"-c lock_timeout={int(timeout * 1000)}",
            "application_name": "distilserve-registry",
        },
    )


class Database:
    """A database handle plus transaction helpers; the stores (`Registry` and its mixins) build on it.

    Args:
        path: a SQLite file (created with its folder when missing) or a `postgresql://` URL.
        timeout: seconds a write waits for another writer (and a PostgreSQL connect).
        clock: source of timestamps (tests pass a fake).
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0, clock: Clock = time.time) -> None:
        self.url = engine_url(path)
        self.location: str | Path = str(path) if is_url(path) else Path(path).absolute()
        self.timeout = timeout
        self._clock = clock
        # RLock: a store method may call another inside `transaction()` on the same thread.
        self._lock = threading.RLock()
        self._conn: Connection | None = None  # the connection of the open transaction
        self._writing = False
        self._bumped = False
        self._pid = os.getpid()
        self._closed = False
        make = _postgresql_engine if self.url.get_backend_name() == "postgresql" else _sqlite_engine
        self._engine: Engine = make(self.url, timeout)
        try:
            migrate(self._engine, self.where)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def where(self) -> str:
        """The location for messages (a URL without its password)."""
        if self.backend == "sqlite":
            return str(self.url.database)
        return self.url.render_as_string(hide_password=True)

    @property
    def backend(self) -> str:
        """'sqlite' or 'postgresql'."""
        return self.url.get_backend_name()

    # A Registry shipped to another process (Ray pickles deployment arguments) reconnects
    # there; a connection cannot cross a process boundary.
    def __getstate__(self) -> dict[str, Any]:
        location = self.url.render_as_string(hide_password=False) if self.backend == "postgresql" else self.location
        return {"location": location, "timeout": self.timeout, "clock": self._clock}

    def __setstate__(self, state: dict[str, Any]) -> None:
        Database.__init__(self, state["location"], timeout=state["timeout"], clock=state["clock"])

    def __enter__(self) -> Database:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._engine.dispose()

    def _checkout(self) -> Connection:
        if self._closed:
            raise ValueError(f"registry {self.where!r} is closed")
        if self._pid != os.getpid():
            # Forked: the parent's pooled connections must not be used (or closed) here.
            self._engine.dispose(close=False)
            self._pid = os.getpid()
        return self._engine.connect()

    def data_version(self) -> int:
        """A counter every control-plane write (traffic, versions, rollouts, events, shadow, warm)
        bumps in its own transaction, on either backend.

        A reader polling for changes compares it between polls instead of rereading tables.
        Prediction and feedback rows do not bump it: they change no routing.
        """
        with self._read() as conn:
            return int(conn.execute(sa.select(schema.revision.c.revision)).scalar_one())

    @property
    def schema_version(self) -> int:
        """The schema version of the database (equals SCHEMA_VERSION once opened)."""
        with self._read() as conn:
            return schema.schema_version(conn)

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """Group several writes atomically: `with reg.transaction(): reg.set_traffic(...); ...`.

        Serialised with every other writer from the start (see the module docstring). Store
        methods called inside join this transaction; an exception escaping the block rolls all
        of it back. Keep it short: other writers wait.
        """
        with self._begin(write=True, bump=True) as conn:
            yield conn

    @contextmanager
    def _append(self) -> Iterator[Connection]:
        # Data-plane rows (predictions, feedback): a write that neither waits for the revision
        # row nor bumps it, so ingress replicas' batches do not queue on one row.
        with self._begin(write=True, bump=False) as conn:
            yield conn

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        with self._begin(write=False, bump=False) as conn:
            yield conn

    @contextmanager
    def _begin(self, *, write: bool, bump: bool) -> Iterator[Connection]:
        with self._lock:
            if self._conn is not None:
                # Nested: join the outer transaction.
                if write and not self._writing:
                    raise RegistryError("a registry write cannot run inside a read-only transaction")
                if bump and not self._bumped:
                    self._bump(self._conn)
                yield self._conn
                return
            conn = self._checkout()
            try:
                if write:
                    conn.execution_options(registry_write=True)
                elif self.backend == "postgresql":
                    conn.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
                with conn.begin():
                    self._conn, self._writing, self._bumped = conn, write, False
                    try:
                        if bump:
                            self._bump(conn)
                        yield conn
                    finally:
                        self._conn = None
            finally:
                conn.close()

    def _bump(self, conn: Connection) -> None:
        # First statement of a control-plane write on PostgreSQL: the row lock it takes
        # serialises writers as SQLite's BEGIN IMMEDIATE does.
        conn.execute(sa.update(schema.revision).values(revision=schema.revision.c.revision + 1))
        self._bumped = True

    def _upsert(
        self,
        conn: Connection,
        table: sa.Table,
        rows: dict[str, Any] | list[dict[str, Any]],
        keys: Sequence[str],
        update: Sequence[str] = (),
    ) -> None:
        """INSERT ... ON CONFLICT (keys) DO UPDATE SET update (DO NOTHING when `update` is empty)."""
        if conn.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table)
        if update:
            stmt = stmt.on_conflict_do_update(index_elements=keys, set_={c: stmt.excluded[c] for c in update})
        else:
            stmt = stmt.on_conflict_do_nothing(index_elements=keys)
        conn.execute(stmt, rows)

    def _now(self) -> float:
        return float(self._clock())


__all__ = ["SCHEMA_VERSION", "Database", "engine_url", "is_url"]
