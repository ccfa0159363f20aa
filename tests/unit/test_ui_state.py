"""The operator page's JSON (/ui/api/state): its shape, its gate rows, and the no-secrets rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from serving.errors import install_handlers
from serving.registry import Registry
from serving.rollout.decide import RolloutStatus
from serving.rollout.policy import CanaryGates, CanaryPolicy
from serving.rollout.stats import VersionStats
from serving.ui import router as ui_router
from serving.ui.gates import canary_gates, gate, steps
from serving.ui.source import RegistrySource
from serving.ui.state import redact
from tests.unit import test_control_rollouts as rc

M = rc.M


@pytest.fixture
def clock() -> rc.Clock:
    return rc.Clock()


@pytest.fixture
def reg(tmp_path: Path, clock: rc.Clock) -> Registry:
    r = Registry(tmp_path / "registry.db", clock=clock)
    for v, acc, p99 in (("1", 0.9, 20.0), ("2", 0.88, 5.0), ("3", 0.7, 2.0)):
        folder = tmp_path / M / v
        folder.mkdir(parents=True)
        r.register_version(M, v, folder, rc.card(v, accuracy=acc, p99_ms=p99))
    r.set_traffic(M, {"1": 100.0}, reason="initial", actor="test")
    return r


def client(reg: Registry) -> TestClient:
    app = FastAPI()
    install_handlers(app)
    app.include_router(ui_router.router)
    app.state.ui_source = RegistrySource(reg, [M])  # injected: the router never opens a registry
    return TestClient(app)


def get_state(reg: Registry) -> dict:
    r = client(reg).get("/ui/api/state")
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "no-store"
    return r.json()


def test_state_lists_versions_cards_flags_and_history(reg: Registry) -> None:
    reg.set_traffic(M, {"1": 0.0, "2": 100.0}, reason="switch to the student", actor="cli")
    reg.set_warm(M, "3", True, reason="pre-deploy")
    reg.set_shadow(M, "3", 25.0)
    (model,) = get_state(reg)["models"]
    assert model["model"] == M and model["traffic"] == {"1": 0.0, "2": 100.0}
    assert model["shadow"] == {"version": "3", "share": 25.0} and model["rollback_target"] == "1"
    v1, v2, v3 = model["versions"]
    assert (v1["live"], v1["rollback_target"], v2["live"], v2["weight"], v3["warm"], v3["shadow"]) == (
        False, True, True, 100.0, True, 25.0)
    card = v2["card"]
    assert (card["kind"], card["accuracy"], card["p99_b1_ms"], card["p50_b1_ms"], card["p50_b32_ms"]) == (
        "teacher", 0.88, 5.0, 2.5, None)  # rc.card measures batch 1 only
    assert card["lineage"]["data_fingerprint"] == "d" and card["lineage"]["code_commit"] == "c"
    assert [h["reason"] for h in model["history"]] == ["switch to the student", "initial"]  # newest first
    assert model["health"]["level"] == "ok" and model["rollout"] is None


def test_state_shows_the_running_canary_with_steps_gates_and_decisions(reg: Registry, clock: rc.Clock) -> None:
    load = rc.Load(reg, clock)
    rc.canary(reg, clock)  # steps 10, 50, 100; r1
    ctl = rc.controller(reg, load, clock)
    ctl.tick()  # pending -> 10 %
    rc.window_passes(load, clock, ctl)  # a healthy window -> 50 %
    (model,) = get_state(reg)["models"]
    ro = model["rollout"]
    assert (ro["rollout_id"], ro["active"], ro["strategy"], ro["phase"], ro["stable"], ro["candidate"]) == (
        "r1", True, "canary", "progressing", "1", "2")
    assert [s["state"] for s in ro["steps"]] == ["done", "current", "todo"]
    assert [s["label"] for s in ro["steps"]] == ["10%", "50%", "100%"]
    by_name = {g["name"]: g for g in ro["gates"]}
    # 50 requests each, no errors, the same latency, every ok answer labelled correct.
    assert by_name["requests (fewer of the two)"]["value"] == 50 and by_name["requests (fewer of the two)"]["outcome"] == "pass"
    assert by_name["error rate increase"]["value"] == 0.0 and by_name["accuracy drop"]["outcome"] == "pass"
    assert [d["kind"] for d in ro["decisions"]] == ["rollout.started", "rollout.set_traffic", "rollout.set_traffic"]
    assert ro["commands"] == ["promote", "pause", "abort"]
    assert model["health"] == {"level": "info", "text": "rollout in progress: canary of v2 over v1"}
    assert {v["version"]: v["role"] for v in model["versions"]} == {"1": "stable", "2": "candidate", "3": None}


def test_a_finished_rollout_is_rebuilt_from_its_events(reg: Registry, clock: rc.Clock) -> None:
    load = rc.Load(reg, clock)
    rc.canary(reg, clock)
    ctl = rc.controller(reg, load, clock)
    ctl.tick()
    rc.window_passes(load, clock, ctl, cand_errors=10)  # 20 % errors on the candidate: rolled back
    (model,) = get_state(reg)["models"]
    ro = model["rollout"]
    assert (ro["active"], ro["phase"], ro["commands"]) == (False, "rolled_back", [])
    failed = next(g for g in ro["gates"] if g["name"] == "error rate increase")
    assert failed["outcome"] == "fail" and failed["value"] == pytest.approx(0.2)  # 10/50 - 0/50
    assert model["health"]["level"] == "warn" and "rolled back" in model["health"]["text"]
    assert ro["decisions"][-1]["kind"] == "rollout.finished"


def test_no_live_version_is_the_worst_headline(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "empty.db")
    (model,) = get_state(reg)["models"]
    assert model["health"]["level"] == "bad" and model["versions"] == []


def test_nothing_secret_reaches_the_page(reg: Registry, tmp_path: Path) -> None:
    token, password = "admin-tok-7f3a9c", "hunter2-s3cret"
    reg.record_event(M, "webhook.failed", f"POST https://ops:{password}@hooks.example/x failed",
                     {"url": f"https://ops:{password}@hooks.example/x", "token": token,
                      "headers": {"Authorization": f"Bearer {token}"}})
    body = client(reg).get("/ui/api/state").text
    assert token not in body and password not in body and "Bearer" not in body
    assert "https://***@hooks.example/x" in body  # the rest of the message stays readable
    # Folders and the training config stay on the server.
    assert str(tmp_path) not in body and '"config"' not in body and '"path"' not in body


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param("https://u:p@h/x and ftp://u@h", "https://***@h/x and ftp://***@h", id="url-credentials"),
        pytest.param({"api_key": "k", "n": 1}, {"api_key": "***", "n": 1}, id="secret-key"),
        pytest.param({"Password": ["x"]}, {"Password": "***"}, id="key-case-insensitive"),
        pytest.param(["http://h/x", 3, None], ["http://h/x", 3, None], id="plain-untouched"),
    ],
)
def test_redact(value: object, expected: object) -> None:
    assert redact(value) == expected


G = CanaryGates(min_requests=10, min_labels=5, max_error_rate_increase=0.01, max_p99_ratio=1.5,
                max_p99_ms=100.0, max_accuracy_drop=0.02)


def vs(requests: int = 100, errors: int = 0, p99: float | None = 10.0, labelled: int = 10, correct: int = 9) -> VersionStats:
    return VersionStats(requests=requests, errors=errors, p99_ms=p99, labelled=labelled, correct=correct)


@pytest.mark.parametrize(
    ("stable", "cand", "name", "value", "outcome"),
    [
        pytest.param(vs(), vs(), "error rate increase", 0.0, "pass", id="equal-errors"),
        # 2/100 - 0/100 = 0.02 > 0.01
        pytest.param(vs(), vs(errors=2), "error rate increase", 0.02, "fail", id="errors-up-2pts"),
        # 15 / 10 = 1.5 == max: passes (<=)
        pytest.param(vs(), vs(p99=15.0), "p99 / stable p99", 1.5, "pass", id="ratio-at-threshold"),
        pytest.param(vs(), vs(p99=None), "p99 / stable p99", None, "no data", id="ratio-no-p99"),
        pytest.param(vs(p99=0.0), vs(), "p99 / stable p99", None, "no data", id="ratio-stable-zero"),
        pytest.param(vs(), vs(p99=120.0), "candidate p99", 120.0, "fail", id="absolute-p99"),
        # 9/10 - 8/10 = 0.1 > 0.02
        pytest.param(vs(), vs(correct=8), "accuracy drop", pytest.approx(0.1), "fail", id="accuracy-drop"),
        pytest.param(vs(), vs(labelled=0, correct=0), "accuracy drop", None, "no data", id="no-labels"),
        pytest.param(vs(), vs(requests=4), "requests (fewer of the two)", 4, "fail", id="too-few-requests"),
        pytest.param(None, vs(), "requests (fewer of the two)", None, "no data", id="no-stable-metrics"),
    ],
)
def test_canary_gate_rows(stable, cand, name: str, value: object, outcome: str) -> None:
    row = next(g for g in canary_gates(G, stable, cand) if g["name"] == name)
    assert (row["value"], row["outcome"]) == (value, outcome)


def test_a_gate_never_passes_without_a_value() -> None:
    assert gate("x", float("nan"), 1.0, "<=")["outcome"] == "no data"
    assert gate("x", None, 0.0, ">=")["outcome"] == "no data"


@pytest.mark.parametrize(
    ("phase", "step", "expected"),
    [
        pytest.param("progressing", 0, ["current", "todo", "todo"], id="first-step"),
        pytest.param("paused", 1, ["done", "current", "todo"], id="paused-mid"),
        pytest.param("promoted", 2, ["done", "done", "done"], id="promoted"),
        pytest.param("rolled_back", 1, ["done", "todo", "todo"], id="rolled-back-no-current"),
    ],
)
def test_canary_steps(phase: str, step: int, expected: list[str]) -> None:
    policy = CanaryPolicy(step_weights=[10, 50, 100])
    status = RolloutStatus(strategy="canary", phase=phase, stable_version="1", candidate_version="2", step=step,
                           traffic={"1": 50.0, "2": 50.0})
    assert [s["state"] for s in steps(policy, status)] == expected


def test_page_and_assets_are_served_with_a_strict_policy(reg: Registry) -> None:
    c = client(reg)
    page = c.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "/ui/static/app.js" in page.text and "http" not in page.text.replace("http-equiv", "")  # no CDN
    for name in ("app.js", "style.css"):
        assert c.get(f"/ui/static/{name}").status_code == 200, name
    for name in ("router.py", "..%2Frouter.py", "nope.js"):  # only the shipped assets, nothing else
        assert c.get(f"/ui/static/{name}").status_code == 404, name
    assert "no asset" in c.get("/ui/static/nope.js").json()["error"]


def test_state_endpoint_reads_through_the_injected_source() -> None:
    class Fake:
        def models(self) -> list[str]:
            return []

    app = FastAPI()
    app.include_router(ui_router.router)
    app.state.ui_source = Fake()
    assert json.loads(TestClient(app).get("/ui/api/state").text)["models"] == []
