"""The controller's leader lock, its model discovery and its deploy bookkeeping (no Ray)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.control.controller import LeaderLock
from serving.runner import repository_models


def test_one_leader_per_registry_until_it_lets_go(tmp_path: Path) -> None:
    first, second = LeaderLock(tmp_path / "registry.db"), LeaderLock(tmp_path / "registry.db")
    assert first.try_acquire() and first.try_acquire()  # re-entrant for the holder
    assert not second.try_acquire()
    assert first.path.read_text().strip().isdigit()  # the leader's pid, for an operator
    first.release()
    assert second.try_acquire()
    assert LeaderLock(tmp_path / "other.db").try_acquire()  # another registry, another leader
    second.release()


def _model(repo: Path, name: str, versions: dict[str, bool], config: bool = True) -> None:
    folder = repo / name
    folder.mkdir(parents=True)
    if config:
        (folder / "config.pbtxt").write_text(f'name: "{name}"\n')
    for version, carded in versions.items():
        (folder / version).mkdir()
        if carded:
            (folder / version / "card.json").write_text(json.dumps({}))


def test_repository_models_are_folders_with_a_config_and_an_exported_version(tmp_path: Path) -> None:
    _model(tmp_path, "sentiment", {"1": True})
    _model(tmp_path, "topics", {"1": False, "2": True})
    _model(tmp_path, "empty", {})  # nothing exported yet: not served (it could never be ready)
    _model(tmp_path, "unexported", {"1": False})
    _model(tmp_path, "noconfig", {"1": True}, config=False)
    _model(tmp_path, "Bad Name", {"1": True})
    (tmp_path / "README.md").write_text("not a model")
    assert repository_models(tmp_path) == ["sentiment", "topics"]
    assert repository_models(tmp_path / "missing") == []
    _model(tmp_path, "added-later", {"1": True})
    assert repository_models(tmp_path) == ["added-later", "sentiment", "topics"]


def test_a_standby_controller_publishes_routing_but_acts_only_once_it_leads(tmp_path: Path) -> None:
    """The new cluster of an upgrade: the old controller holds the lock; the new one's ingress
    must still route (a snapshot), and nothing may be deployed or written for rollouts."""
    from serving.config import ServeConfig
    from serving.control.controller import ControlLoop
    from serving.registry import Registry
    from tests.helpers import wait_for
    from tests.unit.test_registry import make_card

    repo, db = tmp_path / "repo", tmp_path / "registry.db"
    _model(repo, "sentiment", {"1": True})
    with Registry(db) as reg:
        reg.register_version("sentiment", "1", repo / "sentiment" / "1", make_card("1"))
        reg.set_traffic("sentiment", {"1": 100}, reason="initial")
    old_leader = LeaderLock(db)
    assert old_leader.try_acquire()
    loop = ControlLoop(ServeConfig(model_repository=repo, registry=db, models=["sentiment"]), reconcile_s=0.05)
    loop.start()
    try:
        wait_for(lambda: loop.snapshot.revision >= 1, 10, "a standby snapshot")
        assert loop.snapshot.models["sentiment"].weights == {"1": 100.0}
        loop.add_predictions([("req-1", "sentiment", "1", "positive", None, 1.0)])
        passes = loop.passes
        with Registry(db) as reg:
            reg.set_traffic("sentiment", {"1": 100}, reason="an admin write elsewhere")
            wait_for(lambda: loop.passes >= passes + 2, 10, "two more standby passes (one flushes)")
            reg.record_feedback("req-1", label="positive", outcome=None)  # the prediction was written: no error
            events = [e.kind for e in reg.events("sentiment")]
        assert not loop.leader and "deployed" not in events and "pruned" not in events
    finally:
        loop.stop(timeout_s=5)
        old_leader.release()


@pytest.mark.parametrize(
    ("states", "done"),
    [
        ({"m-v1": ("RUNNING", "")}, {"m-v1": None}),
        ({"m-v1": ("DEPLOYING", "")}, {}),
        ({"m-v1": ("UNHEALTHY", "replica died")}, {}),  # serve.run keeps waiting while Serve retries
        ({"m-v1": ("NOT_STARTED", "")}, {}),
        ({"m-v1": ("DEPLOY_FAILED", "TritonError: bad weights")},
         {"m-v1": "Deploying application m-v1 failed: TritonError: bad weights"}),
        ({"m-v1": None}, {"m-v1": "Waiting for application m-v1 to be RUNNING, but application doesn't exist."}),
        ({"m-v1": ("RUNNING", ""), "m-v2": ("DEPLOYING", ""), "n-v1": ("DEPLOY_FAILED", "x")},
         {"m-v1": None, "n-v1": "Deploying application n-v1 failed: x"}),
    ],
)
def test_deploy_outcomes_follow_serve_runs_wait(states: dict, done: dict) -> None:
    from serving.runner import deploy_outcomes

    assert deploy_outcomes(states) == done
