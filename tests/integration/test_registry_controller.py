"""The rollout controller on a PostgreSQL registry: its unit tests again, and a server restart
in the middle of a rollout.

The imported test bodies are tests/unit/test_control_rollouts.py's (those that use the
registry), run with a `location` on a real PostgreSQL server (tests/services.py).
"""

from __future__ import annotations

import pytest

from serving.registry import Registry
from tests.services import PostgresServer, fixtures_of, postgres_server, rerun_tests  # noqa: F401 - fixture
from tests.unit import test_control_rollouts as base

TESTS = rerun_tests(base, {"reg"})
globals().update(TESTS)
globals().update(fixtures_of(base, skip={"location"}))  # the imported tests' own fixtures
reg, clock, load = base.reg, base.clock, base.load  # (named for the test below)


@pytest.fixture
def location(postgres_server: PostgresServer) -> str:  # noqa: F811 - the fixture, used by name
    return postgres_server.create_database()


def test_postgresql_restart_mid_rollout_loses_no_state(
    reg: Registry, load: base.Load, clock: base.Clock, postgres_server: PostgresServer  # noqa: F811
) -> None:
    assert reg.backend == "postgresql"
    base.canary(reg, clock)
    ctl = base.controller(reg, load, clock)
    ctl.tick()  # pending -> step 1
    assert reg.get_traffic(base.M) == {"1": 90.0, "2": 10.0}
    before = base.stored(reg)
    revision = reg.data_version()

    postgres_server.restart()  # every open connection is cut; the pool holds dead ones

    # The same handles carry on: the registry reconnects instead of failing forever.
    assert reg.data_version() == revision
    assert base.stored(reg) == before  # the rollout document survived as it was
    base.window_passes(load, clock, ctl)  # judged from the stored status: 10 % passes -> 50 %
    assert reg.get_traffic(base.M) == {"1": 50.0, "2": 50.0}

    # Down during a tick: the tick fails (logged, not raised), the next one after the start acts.
    clock.advance(30)
    load.serve("1", 50)
    load.serve("2", 50)
    postgres_server.stop()
    clock.advance(31)
    try:
        assert ctl.tick() == []
    finally:
        postgres_server.start()
    assert [e.kind for e in ctl.tick()] == ["rollout.promote", "rollout.finished"]
    assert reg.get_traffic(base.M) == {"1": 0.0, "2": 100.0}
    assert reg.load_active_rollout(base.M) is None
    # Every step is in the history exactly once, in order, across the restarts.
    assert [h.traffic for h in reversed(reg.history(base.M))] == [
        {"1": 100.0}, {"1": 90.0, "2": 10.0}, {"1": 50.0, "2": 50.0}, {"1": 0.0, "2": 100.0}
    ]
    assert base.kinds(reg) == [
        "rollout.started", "rollout.set_traffic", "rollout.set_traffic", "rollout.promote", "rollout.finished"]
