"""The registry's unit tests again, on a real PostgreSQL.

The test bodies are tests/unit/test_registry.py's, imported here; only the `location` fixture
differs: a fresh database on a PostgreSQL server this session starts (tests/services.py). They
live in the integration tier because they need that server; on SQLite they run with the unit
tests. The rollout controller's registry tests get the same treatment in
test_registry_controller.py (its `reg` fixture differs from this one).
"""

from __future__ import annotations

import pytest

from tests.services import PostgresServer, fixtures_of, postgres_server, rerun_tests  # noqa: F401 - fixture
from tests.unit import test_registry

# The same functions, collected under this module so that its `location` fixture applies,
# with their module's other fixtures (`reg` asks for `location`).
TESTS = rerun_tests(test_registry, {"reg", "location"}, skip=test_registry.SQLITE_ONLY)
globals().update(TESTS)
globals().update(fixtures_of(test_registry, skip={"location"}))


@pytest.fixture
def location(postgres_server: PostgresServer) -> str:  # noqa: F811 - the fixture, used by name
    return postgres_server.create_database()


def test_the_suite_runs_on_postgresql(location: str) -> None:
    from serving.registry import Registry

    with Registry(location) as r:
        assert r.backend == "postgresql"
    assert len(TESTS) >= 15  # the import found them
