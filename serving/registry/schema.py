"""The registry's tables (SQLAlchemy Core, one definition for SQLite and PostgreSQL) and migrations.

The tables below describe the schema at head, for queries. The DDL lives in the alembic
migrations under `migrations/versions/` (never edit a shipped one: append a new revision),
run by `migrate()` whenever a registry is opened.

A file made before alembic (the hand-rolled schema, PRAGMA user_version 1 or 2) is stamped
with the revision that reproduces it and upgraded in place.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from serving.registry.errors import RegistryError

# The alembic revisions in order; the schema version is the position of the newest one.
# A unit test checks this list against the migrations folder (so opening a registry that is
# already at head never imports alembic).
REVISIONS = ("0001", "0002", "0003")
SCHEMA_VERSION = len(REVISIONS)
MIGRATIONS = Path(__file__).parent / "migrations"
# pg_advisory_xact_lock key: two processes opening a fresh database migrate one after the other.
_MIGRATION_LOCK = 0x64_73_72_67  # "dsrg"

metadata = sa.MetaData()

versions = sa.Table(
    "versions",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, primary_key=True),
    sa.Column("path", sa.Text, nullable=False),
    sa.Column("card_json", sa.Text, nullable=False),
    sa.Column("weights_sha256", sa.Text, nullable=False),
    sa.Column("registered_at", sa.Double, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
)
# Current traffic is the newest row per model: one table, so the live table and its history
# can never disagree.
deployments = sa.Table(
    "deployments",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Column("traffic_json", sa.Text, nullable=False),
    sa.Column("previous_json", sa.Text, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("actor", sa.Text, nullable=False),
)
shadows = sa.Table(
    "shadows",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("share", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)
rollouts = sa.Table(
    "rollouts",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("rollout_id", sa.Text, primary_key=True),
    sa.Column("strategy", sa.Text, nullable=False),
    sa.Column("status_json", sa.Text, nullable=False),
    sa.Column("active", sa.Integer, nullable=False),
    sa.Column("final_phase", sa.Text),
    sa.Column("started_at", sa.Double, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
    sa.Column("finished_at", sa.Double),
)
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("rollout_id", sa.Text),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("data_json", sa.Text, nullable=False),
)
predictions = sa.Table(
    "predictions",
    metadata,
    sa.Column("request_id", sa.Text, primary_key=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("version", sa.Text, nullable=False),
    sa.Column("label_predicted", sa.Text, nullable=False),
    sa.Column("user_id", sa.Text),
    sa.Column("ts", sa.Double, nullable=False),
    sa.Column("label", sa.Text),
    sa.Column("outcome", sa.Integer),
    sa.Column("feedback_ts", sa.Double),
)
warm = sa.Table(
    "warm",
    metadata,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("version", sa.Text, primary_key=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("updated_at", sa.Double, nullable=False),
)
# One row (id 1): bumped by every control-plane write, in the same transaction (see db.py).
revision = sa.Table(
    "registry_revision",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("revision", sa.BigInteger, nullable=False),
)


def _found_version(conn: Connection) -> tuple[int, str | None]:
    """(schema version, alembic revision) of an open database; (0, None) when it is empty."""
    if sa.inspect(conn).has_table("alembic_version"):
        rev = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        if rev is None:
            return 0, None
        # A revision this code does not know was written by newer code.
        return (REVISIONS.index(rev) + 1 if rev in REVISIONS else SCHEMA_VERSION + 1), rev
    if conn.dialect.name == "sqlite":
        # Before alembic the SQLite schema counted itself in the file header; revision n = version n.
        legacy = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
        return legacy, (f"{legacy:04d}" if 0 < legacy <= SCHEMA_VERSION else None)
    return 0, None


def _check_not_newer(found: int, rev: str | None, where: str) -> None:
    if found > SCHEMA_VERSION:
        shown = f" (revision {rev!r})" if rev and rev not in REVISIONS else ""
        raise RegistryError(
            f"registry {where!r} has schema_version {found}{shown}, newer than this code's {SCHEMA_VERSION}; "
            "upgrade distilserve before opening it"
        )


def schema_version(conn: Connection) -> int:
    return _found_version(conn)[0]


def migrate(engine: Engine, where: str) -> None:
    """Bring the schema to head; a no-op (one read, no lock, no alembic import) when it is there."""
    with engine.connect() as conn:
        found, rev = _found_version(conn)
    _check_not_newer(found, rev, where)
    if found == SCHEMA_VERSION:
        return
    with engine.connect() as conn:
        conn.execution_options(registry_write=True)  # SQLite: BEGIN IMMEDIATE (see db.py)
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            # Re-read under the lock: another process may have migrated while we waited.
            found, rev = _found_version(conn)
            _check_not_newer(found, rev, where)
            if found < SCHEMA_VERSION:
                _upgrade(conn, rev)


def _upgrade(conn: Connection, legacy_rev: str | None) -> None:
    # Imported here: alembic is needed only when a schema actually changes.
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = conn  # env.py runs the migrations on this connection and transaction
    if legacy_rev is not None and not sa.inspect(conn).has_table("alembic_version"):
        command.stamp(cfg, legacy_rev)
    command.upgrade(cfg, "head")
