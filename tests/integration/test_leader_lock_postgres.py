"""The controller's leader lock on a PostgreSQL registry: a session advisory lock, on a real server.

The SQLite path (a flock) is tested in tests/unit/test_control_loop_parts.py; this is the path a
cluster takes, where the controllers of two Ray clusters (an upgrade's old and new) share one
database and exactly one may act.
"""

from __future__ import annotations

import sqlalchemy as sa

from serving.control.controller import LeaderLock
from serving.registry.db import engine_url
from tests.helpers import wait_for
from tests.services import PostgresServer, postgres_server, postgres_url  # noqa: F401 - fixtures


def test_one_leader_per_database_until_it_releases(postgres_server: PostgresServer) -> None:  # noqa: F811
    url = postgres_server.create_database()
    first, second = LeaderLock(url), LeaderLock(url)
    try:
        assert first.try_acquire() and first.try_acquire()  # held: asking again is a yes
        assert not second.try_acquire()
        assert LeaderLock(postgres_server.create_database()).try_acquire()  # another database, another leader
        first.release()
        assert second.try_acquire()
        assert "advisory lock" in str(second)
    finally:
        first.release()
        second.release()


def test_a_leader_whose_session_dies_loses_the_lock(postgres_server: PostgresServer) -> None:  # noqa: F811
    """The node or process of the leader goes: the server ends its session and the lock with it."""
    url = postgres_server.create_database()
    leader, standby = LeaderLock(url), LeaderLock(url)
    admin = sa.create_engine(engine_url(url), poolclass=sa.pool.NullPool)
    try:
        assert leader.try_acquire()
        assert not standby.try_acquire()
        with admin.connect() as conn:
            killed = conn.execute(sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND granted"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )).scalars().all()
        assert killed == [True]
        wait_for(standby.try_acquire, 10, "the standby takes over")
    finally:
        leader._conn = None  # its connection is already dead
        standby.release()
        admin.dispose()
