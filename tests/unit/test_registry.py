"""Unit tests of serving.registry on tmp_path SQLite files (no servers).

The same tests run against a real PostgreSQL in tests/integration/test_registry_backends.py,
which overrides the `location` fixture; tests that only make sense for SQLite files are listed
in SQLITE_ONLY.
"""

from __future__ import annotations

import math
import pickle
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from distilserve.core.card import LatencyStats, Lineage, ModelCard
from serving.registry import (
    SCHEMA_VERSION,
    InvalidTrafficError,
    PredictionRow,
    Registry,
    RegistryError,
    RolloutConflictError,
    UnknownRequestError,
    UnknownRolloutError,
    UnknownVersionError,
    VersionConflictError,
)
from serving.registry.db import engine_url
from serving.registry.schema import REVISIONS
from serving.registry.traffic import primary_of

MODEL = "sentiment"


def make_card(version: str, *, model: str = MODEL, sha: str | None = None, **overrides: Any) -> ModelCard:
    lineage: dict[str, Any] = {
        "weights_sha256": sha or f"sha-{version}",
        "code_commit": "c0ffee",
        "code_dirty": False,
        "data_fingerprint": "data-1",
        "config_hash": "cfg-1",
        "config": {"train": {"lr": 0.001, "epochs": 3}, "temperature": 2.0},
    }
    lineage.update(overrides.pop("lineage", {}))
    fields: dict[str, Any] = {
        "model": model,
        "version": version,
        "kind": "student",
        "labels": ["negative", "neutral", "positive"],
        "max_seq_len": 128,
        "accuracy": 0.8,
        "eval_examples": 100,
        "latency": [
            LatencyStats(batch_size=1, p50_ms=5.0, p99_ms=9.0, runs=50),
            LatencyStats(batch_size=32, p50_ms=40.0, p99_ms=60.0, runs=20),
        ],
        "parameters": 1000,
        "bytes": 4000,
        "created_at": "2026-01-01T00:00:00Z",
        "lineage": Lineage(**lineage),
    }
    fields.update(overrides)
    return ModelCard(**fields)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


@pytest.fixture
def location(tmp_path: Path) -> str | Path:
    """Where the registry under test lives: a SQLite file here, a PostgreSQL URL in the integration tier."""
    return tmp_path / "registry.db"


@pytest.fixture
def reg(location: str | Path) -> Iterator[Registry]:
    with Registry(location, clock=FakeClock()) as r:
        yield r


def register(reg: Registry, root: Path, *versions: str) -> None:
    for v in versions:
        folder = root / "repo" / MODEL / v
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "weights.safetensors").write_bytes(b"w")
        reg.register_version(MODEL, v, folder, make_card(v))


# ---- versions ---------------------------------------------------------------------------------


def test_register_list_get_in_numeric_order(reg: Registry, tmp_path: Path) -> None:
    register(reg, tmp_path, "10", "2", "1")
    reg.register_version("other", "1", tmp_path / "repo" / "other" / "1", make_card("1", model="other"))
    assert [r.version for r in reg.list_versions(MODEL)] == ["1", "2", "10"]  # numeric, not text order
    assert reg.models() == ["other", MODEL]
    got = reg.get_version(MODEL, "2")
    assert got is not None and got.status == "available"
    assert got.card.lineage.weights_sha256 == "sha-2"
    assert got.path == str(tmp_path / "repo" / MODEL / "2")
    assert reg.get_version(MODEL, "3") is None
    assert reg.list_versions("nobody") == []


def test_register_same_sha_is_idempotent(reg: Registry, tmp_path: Path) -> None:
    first = reg.register_version(MODEL, "1", tmp_path / MODEL / "1", make_card("1"))
    again = reg.register_version(MODEL, "1", tmp_path / MODEL / "1", make_card("1", accuracy=0.9))
    assert again == first  # the first registration stands, registered_at included
    assert len(reg.list_versions(MODEL)) == 1


def test_register_different_sha_names_the_conflict(reg: Registry, tmp_path: Path) -> None:
    reg.register_version(MODEL, "1", tmp_path / MODEL / "1", make_card("1", sha="aaa"))
    with pytest.raises(VersionConflictError, match=r"'1'.*'sentiment'.*'aaa'.*'bbb'"):
        reg.register_version(MODEL, "1", tmp_path / MODEL / "1", make_card("1", sha="bbb"))
    record = reg.get_version(MODEL, "1")
    assert record is not None and record.card.lineage.weights_sha256 == "aaa"


def test_register_refuses_card_of_another_version(reg: Registry, tmp_path: Path) -> None:
    with pytest.raises(
        RegistryError, match=r"card is for 'sentiment' version '2', not 'sentiment' version '1'"
    ):
        reg.register_version(MODEL, "1", tmp_path, make_card("2"))


# ---- traffic ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        pytest.param({}, r"at least one version", id="empty"),
        pytest.param({"1": 50.0, "2": 40.0}, r"sum to 100.*got 90\.0", id="sum-90"),
        pytest.param({"1": 60.0, "2": 40.1}, r"sum to 100.*got 100\.1", id="sum-100.1"),
        # 1e-5 off is outside the ±1e-6 tolerance.
        pytest.param({"1": 99.99999, "2": 0.0}, r"got 99\.99999", id="sum-off-by-1e-5"),
        pytest.param({"1": 110.0, "2": -10.0}, r"'1' must be in \[0, 100\], got 110\.0", id="over-100"),
        pytest.param({"1": 100.0, "2": -0.5}, r"'2' must be in \[0, 100\], got -0\.5", id="negative"),
        pytest.param({"1": math.nan}, r"'1' must be a finite number, got nan", id="nan"),
        pytest.param({"1": math.inf}, r"'1' must be a finite number, got inf", id="inf"),
        pytest.param({"1": True}, r"'1' must be a finite number, got True", id="bool"),
        pytest.param({"1": "100"}, r"'1' must be a finite number, got '100'", id="string"),
        pytest.param({"": 100.0}, r"non-empty strings.*got ''", id="empty-version"),
        pytest.param({"1": 50.0, "7": 50.0}, r"'7' \(not registered\)", id="unregistered"),
        pytest.param({"3": 100.0}, r"'3' \(pruned\)", id="pruned"),
    ],
)
def test_set_traffic_rejects_bad_weights(reg: Registry, tmp_path: Path, weights: dict, message: str) -> None:
    register(reg, tmp_path, "1", "2", "3")
    reg.set_traffic(MODEL, {"1": 100.0}, "first")
    reg.set_traffic(MODEL, {"2": 100.0}, "promote")
    assert reg.prune(MODEL, keep=0) == ["3"]  # 2 live, 1 the rollback target
    before = reg.history(MODEL)
    with pytest.raises(InvalidTrafficError, match=message):
        reg.set_traffic(MODEL, weights, "bad")
    assert reg.history(MODEL) == before
    assert reg.get_traffic(MODEL) == {"2": 100.0}


def test_set_traffic_records_current_previous_and_live(reg: Registry, tmp_path: Path) -> None:
    register(reg, tmp_path, "1", "2", "3")
    assert reg.get_traffic(MODEL) == {}
    assert reg.live_versions(MODEL) == set()
    reg.set_traffic(MODEL, {"1": 100}, "first deploy", actor="cli")
    third = 100 / 3  # three thirds add to 100 only within float rounding: the tolerance lets it pass
    rec = reg.set_traffic(MODEL, {"1": third, "2": third, "3": third}, "a/b", actor="api")
    assert rec.previous == {"1": 100.0}
    assert rec.actor == "api" and rec.reason == "a/b"
    reg.set_traffic(MODEL, {"1": 0, "2": 100}, "promote")
    assert reg.get_traffic(MODEL) == {"1": 0.0, "2": 100.0}
    assert reg.live_versions(MODEL) == {"2"}  # zero weight routes nothing
    hist = reg.history(MODEL)
    assert [h.reason for h in hist] == ["promote", "a/b", "first deploy"]  # newest first
    assert [h.previous for h in hist[:2]] == [hist[1].traffic, hist[2].traffic]
    assert [h.reason for h in reg.history(MODEL, limit=2)] == ["promote", "a/b"]
    assert reg.history("nobody") == []


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        pytest.param([], None, id="no-history"),
        pytest.param([{"1": 100}], None, id="first-deploy"),
        pytest.param([{"1": 100}, {"2": 100}], "1", id="blue-green"),
        # canary 10 -> 50 -> 100: the last table with one 100 % version other than 2 is {1: 100}
        pytest.param([{"1": 100}, {"1": 90, "2": 10}, {"1": 50, "2": 50}, {"2": 100}], "1", id="canary-done"),
        # mid-canary the primary is still 2 (90 %), so the target is what was 100 % before 2
        pytest.param([{"1": 100}, {"2": 100}, {"2": 90, "3": 10}], "1", id="mid-canary"),
        # 50/50 tie: primary is the newer version 2, so rolling back goes to 1
        pytest.param([{"1": 100}, {"1": 50, "2": 50}], "1", id="tie-goes-to-newest"),
        pytest.param([{"1": 100}, {"2": 100}, {"2": 100}], "1", id="repeat-skipped"),
        pytest.param([{"1": 100}, {"2": 100}, {"2": 100, "1": 0}], "1", id="zero-weight-equal"),
        pytest.param([{"1": 100}, {"2": 100}, {"1": 100}], "2", id="after-rollback"),
        pytest.param([{"1": 100}, {"2": 100}, {"3": 100}, {"2": 100}], "3", id="most-recent-distinct"),
        pytest.param([{"1": 50, "2": 50}, {"3": 100}], None, id="never-full-before"),
    ],
)
def test_rollback_target(reg: Registry, tmp_path: Path, tables: list[dict], expected: str | None) -> None:
    register(reg, tmp_path, "1", "2", "3")
    for i, table in enumerate(tables):
        reg.set_traffic(MODEL, table, f"step {i}")
    assert len(reg.history(MODEL)) == len(tables)
    assert reg.rollback_target(MODEL) == expected


@pytest.mark.parametrize(
    ("traffic", "expected"),
    [
        pytest.param({"1": 90.0, "2": 10.0}, "1", id="largest"),
        pytest.param({"2": 50.0, "10": 50.0}, "10", id="tie-numeric-newest"),
        pytest.param({"1": 0.0}, None, id="nothing-live"),
    ],
)
def test_primary_of(traffic: dict[str, float], expected: str | None) -> None:
    assert primary_of(traffic) == expected


def test_shadow_set_get_clear_and_validation(reg: Registry, tmp_path: Path) -> None:
    register(reg, tmp_path, "1", "2")
    assert reg.get_shadow(MODEL) is None
    reg.set_shadow(MODEL, "2", 25.0)
    shadow = reg.get_shadow(MODEL)
    assert shadow is not None and (shadow.version, shadow.share) == ("2", 25.0)
    with pytest.raises(InvalidTrafficError, match=r"share .* must be in \(0, 100\], got 0"):
        reg.set_shadow(MODEL, "1", 0)
    with pytest.raises(InvalidTrafficError, match=r"'9' \(not registered\)"):
        reg.set_shadow(MODEL, "9", 10.0)
    assert reg.get_shadow(MODEL) == shadow  # failed calls changed nothing
    reg.set_shadow(MODEL, None, 0)
    assert reg.get_shadow(MODEL) is None


# ---- retention --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tables", "shadow", "keep", "pruned"),
    [
        # newest 3 are 4,5,6; live 6; target none
        pytest.param([{"6": 100}], None, 3, ["1", "2", "3"], id="keep-newest-3"),
        # rolled back to 1: live 1, target 5; newest 4,5,6 kept
        pytest.param([{"5": 100}, {"1": 100}], None, 3, ["2", "3"], id="live-old-version"),
        # canary 2 -> 3: live 2 and 3; primary 2 has no earlier distinct 100 % table
        pytest.param([{"2": 100}, {"2": 90, "3": 10}], None, 1, ["1", "4", "5"], id="canary-live"),
        pytest.param([{"6": 100}], "4", 2, ["1", "2", "3"], id="shadow-kept"),
        # target 2 (was 100 % before 6)
        pytest.param([{"2": 100}, {"6": 100}], None, 1, ["1", "3", "4", "5"], id="rollback-target-kept"),
        pytest.param([{"3": 100}], None, 0, ["1", "2", "4", "5", "6"], id="keep-0-still-keeps-live"),
        pytest.param([], None, 10, [], id="keep-more-than-exist"),
    ],
)
def test_prune_never_removes_live_shadow_or_target(
    reg: Registry, tmp_path: Path, tables: list[dict], shadow: str | None, keep: int, pruned: list[str]
) -> None:
    register(reg, tmp_path, "1", "2", "3", "4", "5", "6")
    for i, table in enumerate(tables):
        reg.set_traffic(MODEL, table, f"step {i}")
    if shadow:
        reg.set_shadow(MODEL, shadow, 10.0)
    target = reg.rollback_target(MODEL)
    assert reg.prune(MODEL, keep=keep) == pruned
    for record in reg.list_versions(MODEL):
        gone = record.version in pruned
        assert record.status == ("pruned" if gone else "available")
        assert Path(record.path).exists() != gone
    assert not reg.live_versions(MODEL) & set(pruned)
    assert target not in pruned
    assert reg.rollback_target(MODEL) == target
    assert reg.prune(MODEL, keep=keep) == []  # a second prune finds nothing new


def test_prune_refuses_folders_outside_model_dir(reg: Registry, tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    wrong_name = tmp_path / "elsewhere" / "1"  # not <model dir>/sentiment/1
    wrong_name.mkdir(parents=True)
    link = tmp_path / "repo" / MODEL / "2"  # the version folder is a symlink out of the repo
    link.parent.mkdir(parents=True)
    link.symlink_to(outside, target_is_directory=True)
    reg.register_version(MODEL, "1", wrong_name, make_card("1"))
    reg.register_version(MODEL, "2", link, make_card("2"))
    register(reg, tmp_path, "3")
    reg.set_traffic(MODEL, {"3": 100}, "deploy")
    assert reg.prune(MODEL, keep=1) == ["1", "2"]
    assert wrong_name.exists() and link.is_symlink() and (outside / "keep.txt").exists()
    refused = {e.data["version"]: e.message for e in reg.events(MODEL) if e.kind == "prune.refused"}
    assert refused.keys() == {"1", "2"}
    assert "is not <model dir>/sentiment/1" in refused["1"]
    assert "symlink" in refused["2"]


def test_prune_without_deleting_files_and_revive(reg: Registry, tmp_path: Path) -> None:
    register(reg, tmp_path, "1", "2", "3")
    reg.set_traffic(MODEL, {"1": 100}, "deploy")
    reg.set_traffic(MODEL, {"2": 100}, "promote")
    assert reg.prune(MODEL, keep=1) == []  # 3 newest, 2 live, 1 the rollback target
    reg.set_traffic(MODEL, {"3": 100}, "promote")  # now 2 is the target and 1 is free to go
    assert reg.prune(MODEL, keep=1, delete_files=False) == ["1"]
    folder = tmp_path / "repo" / MODEL / "1"
    assert folder.exists()
    with pytest.raises(RegistryError, match=r"keep must be an integer >= 0, got -1"):
        reg.prune(MODEL, keep=-1)
    revived = reg.register_version(MODEL, "1", folder, make_card("1"))  # re-exported, same weights
    assert revived.status == "available"
    reg.set_traffic(MODEL, {"1": 100}, "serve the revived version")


# ---- diff -------------------------------------------------------------------------------------


def test_diff_names_what_changed(reg: Registry, tmp_path: Path) -> None:
    reg.register_version(MODEL, "1", tmp_path / MODEL / "1", make_card("1"))
    card2 = make_card(
        "2",
        accuracy=0.85,
        parameters=500,
        bytes=2000,
        latency=[LatencyStats(batch_size=1, p50_ms=3.0, p99_ms=9.0, runs=50)],
        lineage={
            "code_commit": "beef",
            "code_dirty": True,
            "data_fingerprint": "data-2",
            "config_hash": "cfg-2",
            "config": {"train": {"lr": 0.002, "epochs": 3, "warmup": 10}, "loss": "kl"},
        },
    )
    reg.register_version(MODEL, "2", tmp_path / MODEL / "2", card2)
    d = reg.diff(MODEL, "1", "2")
    changed = {(c.section, c.key): (c.kind, c.a, c.b) for c in d.changes}
    assert changed == {
        ("model", "weights_sha256"): ("changed", "sha-1", "sha-2"),
        ("model", "parameters"): ("changed", 1000, 500),
        ("model", "bytes"): ("changed", 4000, 2000),
        ("code", "code_commit"): ("changed", "c0ffee", "beef"),
        ("code", "code_dirty"): ("changed", False, True),
        ("data", "data_fingerprint"): ("changed", "data-1", "data-2"),
        ("config", "config_hash"): ("changed", "cfg-1", "cfg-2"),
        ("config", "config.train.lr"): ("changed", 0.001, 0.002),
        ("config", "config.temperature"): ("removed", 2.0, None),
        ("config", "config.train.warmup"): ("added", None, 10),
        ("config", "config.loss"): ("added", None, "kl"),
        ("metrics", "accuracy"): ("changed", 0.8, 0.85),
        ("metrics", "latency.batch1.p50_ms"): ("changed", 5.0, 3.0),
        ("metrics", "latency.batch32.p50_ms"): ("removed", 40.0, None),
        ("metrics", "latency.batch32.p99_ms"): ("removed", 60.0, None),
    }
    text = d.render()
    assert text.splitlines()[0] == "sentiment: version 1 -> 2"
    assert "config.train.lr" in text and "0.002" in text and "(absent)" in text
    assert "latency.batch1.p99_ms" not in text  # unchanged rows are not listed
    assert "no differences" in reg.diff(MODEL, "2", "2").render()
    assert [c.kind for c in reg.diff(MODEL, "2", "1").section("config") if c.key == "config.loss"] == [
        "removed"
    ]
    with pytest.raises(UnknownVersionError, match=r"version '9' of model 'sentiment' is not registered"):
        reg.diff(MODEL, "1", "9")


# ---- processes, schema, transactions ----------------------------------------------------------


def test_two_registries_on_one_database_see_each_other(location: str | Path, tmp_path: Path) -> None:
    a = Registry(location)
    b = Registry(location)
    a.register_version(MODEL, "1", tmp_path / MODEL / "1", make_card("1"))
    assert b.get_version(MODEL, "1") is not None
    b.register_version(MODEL, "2", tmp_path / MODEL / "2", make_card("2"))
    a.set_traffic(MODEL, {"1": 100}, "deploy")
    b.set_traffic(MODEL, {"1": 90, "2": 10}, "canary", actor="controller")
    assert a.get_traffic(MODEL) == {"1": 90.0, "2": 10.0}
    a.set_traffic(MODEL, {"2": 100}, "promote")
    assert b.rollback_target(MODEL) == "1"
    assert a.schema_version == b.schema_version == SCHEMA_VERSION
    c = pickle.loads(pickle.dumps(a))  # how Ray ships it to a deployment: reopens by path
    assert c.get_traffic(MODEL) == {"2": 100.0}
    for r in (a, b, c):
        r.close()
    with Registry(location) as reopened:  # schema creation is idempotent
        assert [v.version for v in reopened.list_versions(MODEL)] == ["1", "2"]


def test_newer_schema_is_refused(location: str | Path) -> None:
    Registry(location).close()
    engine = sa.create_engine(engine_url(location))
    with engine.begin() as conn:  # as if newer code had migrated it
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(RegistryError, match=rf"schema_version {SCHEMA_VERSION + 1} \(revision '9999'\), newer than"):
        Registry(location)


def test_revisions_match_the_migrations_folder() -> None:
    from alembic.script import ScriptDirectory

    from serving.registry.schema import MIGRATIONS

    script = ScriptDirectory(str(MIGRATIONS))
    chain = [r.revision for r in reversed(list(script.walk_revisions()))]
    assert tuple(chain) == REVISIONS and len(REVISIONS) == SCHEMA_VERSION


def test_data_version_changes_with_every_control_plane_write(reg: Registry, location: str | Path) -> None:
    other = Registry(location)
    seen = reg.data_version()
    assert other.data_version() == seen
    register(reg, Path("/nonexistent"), "1")
    assert other.data_version() > seen  # another handle's write is visible to a poller
    seen = other.data_version()
    reg.record_predictions([PredictionRow("r1", MODEL, "1", "positive", None, 1.0)])
    reg.record_feedback("r1", outcome=1)
    assert other.data_version() == seen  # data-plane rows change no routing
    with pytest.raises(InvalidTrafficError):
        reg.set_traffic(MODEL, {"1": 50}, "bad")
    assert other.data_version() == seen  # a rolled-back write changes nothing
    reg.set_traffic(MODEL, {"1": 100}, "deploy")
    assert other.data_version() == seen + 1
    with reg.transaction():  # several writes, one transaction: one bump
        reg.set_shadow(MODEL, "1", 5.0)
        reg.record_event(MODEL, "note", "x")
    assert other.data_version() == seen + 2
    other.close()


# The pre-alembic SQLite registry (PRAGMA user_version 2), dumped from a file the old code wrote:
# versions 1-3, a 90/10 canary, a shadow, a warm version, an active rollout, an event, feedback.
LEGACY_DUMP = Path(__file__).parent / "data" / "registry_schema2.sql"


@pytest.mark.parametrize("user_version", [pytest.param(2, id="schema-2"), pytest.param(1, id="schema-1")])
def test_pre_alembic_sqlite_file_upgrades_in_place(tmp_path: Path, user_version: int) -> None:
    db = tmp_path / "old.db"
    with sqlite3.connect(db) as conn:
        conn.executescript(LEGACY_DUMP.read_text())
        if user_version == 1:  # before the warm table existed
            conn.execute("DROP TABLE warm")
        conn.execute(f"PRAGMA user_version = {user_version}")
    with Registry(db) as reg:
        assert reg.schema_version == SCHEMA_VERSION
        assert [v.version for v in reg.list_versions(MODEL)] == ["1", "2", "3"]
        assert reg.get_traffic(MODEL) == {"1": 90.0, "2": 10.0}
        assert [h.reason for h in reg.history(MODEL)] == ["canary step 1", "initial deployment"]
        shadow = reg.get_shadow(MODEL)
        assert shadow is not None and (shadow.version, shadow.share) == ("3", 20.0)
        assert reg.warm_versions(MODEL) == (["2"] if user_version == 2 else [])
        assert reg.load_active_rollout(MODEL) == ("r1", "canary", '{"step": 1}')
        assert [(e.kind, e.data) for e in reg.events(MODEL)] == [("rollout.step", {"step": 1})]
        assert reg.feedback_stats(MODEL, "2") == (1, 1, 1, 1)
        # ids continue after the old rows; writes work; the revision counter exists
        seen = reg.data_version()
        assert reg.set_traffic(MODEL, {"2": 100}, "promote").id == 3
        assert reg.record_event(MODEL, "rollout.done", "done").id == 2
        assert reg.data_version() > seen
    with Registry(db) as again:  # reopening at head changes nothing
        assert again.get_traffic(MODEL) == {"2": 100.0}


def test_locations_and_bad_urls(tmp_path: Path) -> None:
    assert engine_url(tmp_path / "r.db").get_backend_name() == "sqlite"
    assert engine_url("postgresql://u:secret@127.0.0.1:5432/reg").drivername == "postgresql+psycopg"
    assert engine_url("postgres://u@h/reg").drivername == "postgresql+psycopg"
    assert engine_url(f"sqlite:///{tmp_path}/r.db").database == f"{tmp_path}/r.db"
    # The password never reaches a message or a log line.
    with pytest.raises(RegistryError, match=r"'mysql://u:\*\*\*@h/reg' must be a SQLite file path or a PostgreSQL URL"):
        Registry("mysql://u:secret@h/reg")
    with pytest.raises(RegistryError, match=r"does not parse"):
        engine_url("postgresql://u@h:notaport/reg")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("reg/r.db", Path("reg/r.db"), id="path-text"),
        pytest.param(Path("/srv/r.db"), Path("/srv/r.db"), id="path"),
        pytest.param("postgresql://ds@127.0.0.1:5432/reg", "postgresql://ds@127.0.0.1:5432/reg", id="postgresql-url"),
    ],
)
def test_serve_config_registry_is_a_path_or_a_url(value: str | Path, expected: str | Path) -> None:
    from serving.config import ServeConfig

    assert ServeConfig(registry=value).registry == expected


def test_serve_config_refuses_other_databases_naming_the_value() -> None:
    from pydantic import ValidationError

    from serving.config import ServeConfig

    with pytest.raises(ValidationError, match=r"registry 'mysql://ds:\*\*\*@h/reg' must be a SQLite file path"):
        ServeConfig(registry="mysql://ds:pw@h/reg")


SQLITE_ONLY = {
    "test_pre_alembic_sqlite_file_upgrades_in_place",
    "test_locations_and_bad_urls",
    "test_serve_config_registry_is_a_path_or_a_url",
    "test_serve_config_refuses_other_databases_naming_the_value",
}


def test_transaction_groups_writes_and_rolls_back_all(reg: Registry, tmp_path: Path) -> None:
    register(reg, tmp_path, "1", "2")
    with pytest.raises(RuntimeError, match="boom"):
        with reg.transaction():
            reg.set_traffic(MODEL, {"1": 100}, "deploy")
            reg.save_rollout(MODEL, "r1", "canary", '{"step": 1}')
            reg.record_event(MODEL, "rollout.step", "step 1", rollout_id="r1")
            raise RuntimeError("boom")
    assert reg.get_traffic(MODEL) == {} and reg.events(MODEL) == []
    assert reg.load_active_rollout(MODEL) is None
    with reg.transaction():
        reg.set_traffic(MODEL, {"1": 100}, "deploy")
        reg.save_rollout(MODEL, "r1", "canary", '{"step": 1}')
    assert reg.get_traffic(MODEL) == {"1": 100.0}
    assert reg.load_active_rollout(MODEL) == ("r1", "canary", '{"step": 1}')


# ---- rollouts and events ----------------------------------------------------------------------


def test_rollout_state_lifecycle(reg: Registry) -> None:
    assert reg.load_active_rollout(MODEL) is None
    reg.save_rollout(MODEL, "r1", "canary", '{"step": 0}')
    reg.save_rollout(MODEL, "r1", "canary", '{"step": 1}')  # an update, not a second rollout
    assert reg.load_active_rollout(MODEL) == ("r1", "canary", '{"step": 1}')
    with pytest.raises(RolloutConflictError, match=r"already has active rollout 'r1'.*'r2'"):
        reg.save_rollout(MODEL, "r2", "ab", "{}")
    with pytest.raises(RegistryError, match=r"status_json must be JSON text"):
        reg.save_rollout(MODEL, "r1", "canary", "{half")
    reg.save_rollout("other", "r9", "shadow", "{}")  # one active rollout per model, not overall
    reg.finish_rollout(MODEL, "r1", "succeeded")
    reg.finish_rollout(MODEL, "r1", "succeeded")  # idempotent
    assert reg.load_active_rollout(MODEL) is None
    assert reg.load_active_rollout("other") is not None
    with pytest.raises(
        RolloutConflictError, match=r"'r1' of model 'sentiment' already finished \('succeeded'\)"
    ):
        reg.save_rollout(MODEL, "r1", "canary", "{}")
    with pytest.raises(UnknownRolloutError, match=r"rollout_id 'nope' is not a rollout of model 'sentiment'"):
        reg.finish_rollout(MODEL, "nope", "aborted")
    reg.save_rollout(MODEL, "r2", "ab", "{}")
    assert reg.load_active_rollout(MODEL) == ("r2", "ab", "{}")


def test_events_newest_first_filtered_and_limited(reg: Registry) -> None:
    reg.record_event(MODEL, "deploy", "manual", {"by": "ops"})
    for i in range(3):
        reg.record_event(MODEL, "rollout.step", f"step {i}", {"step": i}, rollout_id="r1")
    reg.record_event("other", "deploy", "elsewhere")
    assert [e.message for e in reg.events(MODEL)] == ["step 2", "step 1", "step 0", "manual"]
    assert [e.data["step"] for e in reg.events(MODEL, rollout_id="r1", limit=2)] == [2, 1]
    assert reg.events(MODEL)[-1].data == {"by": "ops"}
    with pytest.raises(RegistryError, match=r"JSON-serialisable"):
        reg.record_event(MODEL, "bad", "x", {"value": object()})


# ---- feedback ---------------------------------------------------------------------------------


def test_feedback_stats(reg: Registry) -> None:
    reg.record_prediction("r1", MODEL, "2", "positive", "u1", ts=10.0)
    reg.record_predictions(
        [
            PredictionRow("r2", MODEL, "2", "negative", None, 11.0),
            PredictionRow("r3", MODEL, "2", "neutral", "u2", 12.0),
            ("r4", MODEL, "2", "positive", None, 5.0),  # before since_ts below
            ("r5", MODEL, "1", "positive", None, 12.0),  # other version
        ]
    )
    reg.record_prediction("r1", MODEL, "2", "negative", "u1", ts=10.0)  # retry: first write wins
    reg.record_feedback("r1", label="positive")  # correct
    reg.record_feedback("r2", label="positive", outcome=1)  # wrong label, success
    reg.record_feedback("r3", outcome=0)
    reg.record_feedback("r3", outcome=1)  # later feedback overrides
    reg.record_feedback("r4", label="positive", outcome=1)
    reg.record_feedback("r5", label="positive", outcome=1)
    # version 2 since 10: labelled r1 (ok), r2 (wrong) -> 2, 1; outcomes r2=1, r3=1 -> 2, 2
    assert reg.feedback_stats(MODEL, "2", since_ts=10.0) == (2, 1, 2, 2)
    # since 0 adds r4: labelled 3, correct 2, outcomes 3, successes 3
    assert reg.feedback_stats(MODEL, "2", since_ts=0.0) == (3, 2, 3, 3)
    assert reg.feedback_stats(MODEL, "1", since_ts=0.0) == (1, 1, 1, 1)
    assert reg.feedback_stats(MODEL, "9", since_ts=0.0) == (0, 0, 0, 0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        pytest.param(
            {"request_id": "ghost", "label": "positive"},
            UnknownRequestError,
            r"request_id 'ghost'",
            id="unknown",
        ),
        pytest.param({"request_id": "r1"}, RegistryError, r"needs a label or an outcome", id="empty"),
        pytest.param(
            {"request_id": "r1", "outcome": 2},
            RegistryError,
            r"outcome must be 0 or 1, got 2",
            id="outcome-2",
        ),
        pytest.param({"request_id": "r1", "outcome": True}, RegistryError, r"got True", id="outcome-bool"),
    ],
)
def test_record_feedback_errors(reg: Registry, kwargs: dict, error: type[Exception], message: str) -> None:
    reg.record_prediction("r1", MODEL, "1", "positive", None, ts=1.0)
    with pytest.raises(error, match=message):
        reg.record_feedback(**kwargs)
    assert reg.feedback_stats(MODEL, "1") == (0, 0, 0, 0)


def test_unknown_request_is_a_key_error_with_a_readable_message(reg: Registry) -> None:
    with pytest.raises(KeyError) as info:
        reg.record_feedback("ghost", outcome=1)
    assert str(info.value) == "request_id 'ghost' has no recorded prediction"
