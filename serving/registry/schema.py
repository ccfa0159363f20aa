"""The registry's SQLite schema, its migrations, and how a connection is opened.

Every process opens its own connection. WAL lets readers run beside one writer; writers take
the write lock up front (`BEGIN IMMEDIATE`) and wait up to `timeout` seconds for it, so two
processes never deadlock upgrading a read lock and never see "database is locked" for a short
write by someone else.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from serving.registry.errors import RegistryError

SCHEMA_VERSION = 2

# MIGRATIONS[n] takes a database from user_version n-1 to n. Statements run one by one inside
# one transaction (executescript would COMMIT first and break that). Never edit a shipped entry:
# append a new one.
MIGRATIONS: dict[int, tuple[str, ...]] = {
    1: (
        """CREATE TABLE IF NOT EXISTS versions (
            model TEXT NOT NULL,
            version TEXT NOT NULL,
            path TEXT NOT NULL,
            card_json TEXT NOT NULL CHECK (json_valid(card_json)),
            weights_sha256 TEXT NOT NULL,
            registered_at REAL NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('available', 'pruned')),
            PRIMARY KEY (model, version)
        )""",
        # Current traffic is the newest row per model: one table, so the live table and its
        # history can never disagree.
        """CREATE TABLE IF NOT EXISTS deployments (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model TEXT NOT NULL,
            ts REAL NOT NULL,
            traffic_json TEXT NOT NULL CHECK (json_valid(traffic_json)),
            previous_json TEXT NOT NULL CHECK (json_valid(previous_json)),
            reason TEXT NOT NULL,
            actor TEXT NOT NULL
        )""",
        "CREATE INDEX IF NOT EXISTS deployments_by_model ON deployments (model, id)",
        """CREATE TABLE IF NOT EXISTS shadows (
            model TEXT PRIMARY KEY,
            version TEXT NOT NULL,
            share REAL NOT NULL CHECK (share > 0 AND share <= 100),
            updated_at REAL NOT NULL
        )""",
        """CREATE TABLE IF NOT EXISTS rollouts (
            model TEXT NOT NULL,
            rollout_id TEXT NOT NULL,
            strategy TEXT NOT NULL,
            status_json TEXT NOT NULL CHECK (json_valid(status_json)),
            active INTEGER NOT NULL CHECK (active IN (0, 1)),
            final_phase TEXT,
            started_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            finished_at REAL,
            PRIMARY KEY (model, rollout_id)
        )""",
        # At most one active rollout per model, enforced by the database, not by politeness.
        "CREATE UNIQUE INDEX IF NOT EXISTS rollouts_one_active ON rollouts (model) WHERE active = 1",
        """CREATE TABLE IF NOT EXISTS events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            model TEXT NOT NULL,
            rollout_id TEXT,
            ts REAL NOT NULL,
            kind TEXT NOT NULL,
            message TEXT NOT NULL,
            data_json TEXT NOT NULL CHECK (json_valid(data_json))
        )""",
        "CREATE INDEX IF NOT EXISTS events_by_model ON events (model, id)",
        "CREATE INDEX IF NOT EXISTS events_by_rollout ON events (model, rollout_id, id)",
        """CREATE TABLE IF NOT EXISTS predictions (
            request_id TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            version TEXT NOT NULL,
            label_predicted TEXT NOT NULL,
            user_id TEXT,
            ts REAL NOT NULL,
            label TEXT,
            outcome INTEGER CHECK (outcome IN (0, 1)),
            feedback_ts REAL
        )""",
        # feedback_stats filters on exactly these columns.
        "CREATE INDEX IF NOT EXISTS predictions_by_version ON predictions (model, version, ts)",
    ),
    # Versions asked to be deployed without traffic (a blue-green idle colour, a canary
    # candidate before its first step): the serve runner keeps them warm.
    2: (
        """CREATE TABLE IF NOT EXISTS warm (
            model TEXT NOT NULL,
            version TEXT NOT NULL,
            reason TEXT NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (model, version)
        )""",
    ),
}


def user_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_not_newer(found: int, path: Path) -> None:
    if found > SCHEMA_VERSION:
        raise RegistryError(
            f"registry {str(path)!r} has schema_version {found}, newer than this code's {SCHEMA_VERSION}; "
            "upgrade distilserve before opening it"
        )


def migrate(conn: sqlite3.Connection, path: Path) -> None:
    """Bring the schema to SCHEMA_VERSION; a no-op (and no write lock) when it is there already."""
    found = user_version(conn)
    _check_not_newer(found, path)
    if found == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        # Re-read under the write lock: another process may have migrated while we waited.
        found = user_version(conn)
        _check_not_newer(found, path)
        for target in range(found + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[target]:
                conn.execute(statement)
        # user_version lives in the file header and changes inside this transaction: a crash
        # leaves either the old schema with the old number or the new schema with the new one.
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    """Open (creating if needed) a registry file in WAL mode with the current schema."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: the sqlite3 module issues no implicit BEGINs; we write our own.
    # check_same_thread=False: the Registry serialises access with its own lock.
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RegistryError(
                f"registry {str(path)!r} could not switch to WAL (journal_mode={mode!r}); use a local file"
            )
        # NORMAL in WAL mode: a killed process loses nothing committed and power loss leaves the
        # file consistent (possibly without the last commits). FULL would fsync every feedback row.
        conn.execute("PRAGMA synchronous = NORMAL")
        migrate(conn, path)
    except BaseException:
        conn.close()
        raise
    return conn
