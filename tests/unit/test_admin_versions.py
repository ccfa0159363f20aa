"""POST /admin/models/{m}/versions/prune: the ingress app as built for serving, a real registry
and real version folders; only the data plane is left out (the route never reaches it)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient
from serving.control.admin import AdminControl

from serving.http.app import attach, build_app
from serving.http.deps import Services
from serving.registry import Registry
from tests.unit.test_registry import MODEL, FakeClock, register

TOKEN = "prune-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    with Registry(tmp_path / "registry.db", clock=FakeClock()) as r:
        register(r, tmp_path, "1", "2", "3", "4")
        r.set_traffic(MODEL, {"1": 100.0}, reason="initial", actor="test")
        r.set_traffic(MODEL, {"2": 100.0}, reason="promoted", actor="test")  # 2 live, 1 rollback target
        yield r


@pytest.fixture
def client(reg: Registry) -> TestClient:
    async def ready(model: str, version: str) -> bool:
        return True

    app = build_app()
    control = AdminControl(reg, [MODEL], refresh=lambda: None, metrics_text=lambda: b"", ready=ready)
    plane = SimpleNamespace(known_model=lambda m: None)  # the served-models check of the data plane
    attach(app, Services(plane=plane, control=control, admin_token=TOKEN.encode(), max_body_bytes=1 << 16))  # type: ignore[arg-type]
    return TestClient(app)


def url(model: str = MODEL) -> str:
    return f"/admin/models/{model}/versions/prune"


def test_dry_run_changes_nothing_then_prune_retires_and_records(client: TestClient, reg: Registry, tmp_path: Path) -> None:
    folder3 = tmp_path / "repo" / MODEL / "3"
    dry = client.post(url(), json={"keep": 1, "dry_run": True}, headers=AUTH)
    assert dry.status_code == 200, dry.text
    # keep 1 = the newest (4); 2 is live and 1 the rollback target: only 3 goes.
    assert dry.json()["pruned"] == ["3"] and dry.json()["dry_run"] is True
    assert folder3.is_dir() and reg.get_version(MODEL, "3").status == "available"
    out = client.post(url(), json={"keep": 1}, headers=AUTH).json()
    assert out["pruned"] == ["3"] and out["kept"] == ["1", "2", "4"]
    assert out["roles"] == {"1": ["rollback target"], "2": ["live 100%"], "4": ["newest"]}
    assert not folder3.exists() and reg.get_version(MODEL, "3").status == "pruned"
    (event,) = [e for e in reg.events(MODEL) if e.kind == "pruned"]
    assert event.data == {"versions": ["3"], "keep": 1, "actor": "admin-api"}
    assert client.post(url(), json={"keep": 1}, headers=AUTH).json()["pruned"] == []


def test_warm_version_is_never_pruned(client: TestClient, reg: Registry) -> None:
    reg.set_warm(MODEL, "3")
    out = client.post(url(), json={"keep": 1}, headers=AUTH).json()
    assert out["pruned"] == [] and out["roles"]["3"] == ["warm"]


@pytest.mark.parametrize(
    ("body", "headers", "status", "said"),
    [
        pytest.param({"keep": 1}, {}, 401, "Bearer", id="no-token"),
        pytest.param({"keep": 1}, {"Authorization": "Bearer nope"}, 401, "Bearer", id="wrong-token"),
        pytest.param({"keep": 0}, AUTH, 422, "keep", id="keep-zero"),
        pytest.param({"keep": 1, "force": True}, AUTH, 422, "force", id="unknown-field"),
    ],
)
def test_refusals_name_the_problem(client: TestClient, body: dict, headers: dict, status: int, said: str) -> None:
    r = client.post(url(), json=body, headers=headers)
    assert r.status_code == status and said in r.json()["error"], r.text


def test_the_controller_answers_every_admin_call() -> None:
    """In controller mode the ingress's admin API is `ControllerAdmin`, relayed to the controller's
    `admin()`: both must know every call `AdminControl` offers (prune was missing: a 500)."""
    import inspect

    from serving.control.controller import ADMIN_METHODS
    from serving.control.snapshot_view import ControllerAdmin

    offered = {n for n, f in inspect.getmembers(AdminControl, inspect.iscoroutinefunction) if not n.startswith("_")}
    relayed = {n for n, f in inspect.getmembers(ControllerAdmin, inspect.iscoroutinefunction) if not n.startswith("_")}
    assert offered == relayed == set(ADMIN_METHODS)
