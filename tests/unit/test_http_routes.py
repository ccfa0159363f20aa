"""The routers over a data plane with fake traffic and transport (no Ray): each route's wiring,
the admin check before anything else, the body limit, and JSON errors naming the field."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from serving.http.app import attach, build_app
from serving.http.deps import Services
from tests.unit.test_dataplane import FakeView, plane

TOKEN = "tok-123"
ADMIN = {"authorization": f"Bearer {TOKEN}"}
TEXT = {"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}


class FakeControl:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def status(self, model: str) -> dict:
        self.calls.append(("status", model))
        return {"model": model}

    async def set_traffic(self, model: str, weights: dict, reason: str) -> dict:
        self.calls.append(("traffic", model, weights))
        return {"model": model, "traffic": weights}

    async def rollout_command(self, model: str, command: str) -> dict:
        self.calls.append(("command", model, command))
        return {"model": model}


@pytest.fixture
def client() -> tuple[TestClient, FakeControl]:
    app = build_app()
    control = FakeControl()
    attach(app, Services(plane(view=FakeView()), control, TOKEN.encode(), 2048))  # type: ignore[arg-type]
    return TestClient(app), control


def test_routes_answer_503_until_the_ingress_attached_its_services() -> None:
    r = TestClient(build_app()).post("/v2/models/m/infer", json=TEXT)
    assert r.status_code == 503 and r.headers["retry-after"] == "1" and "starting" in r.json()["error"]


def test_the_copy_serve_freezes_finds_the_services_attached_to_the_module_app() -> None:
    """Behind Serve's proxy the replica serves the copy `@serve.ingress` pickled at class
    definition, while the deployment attaches to the module's app (the multinode test's 503s)."""
    app = build_app()
    frozen = build_app()  # stands for the pickled copy: another app object carrying the same state
    frozen.state.app_id = app.state.app_id
    assert TestClient(frozen).post("/v2/models/m/versions/2/infer", json=TEXT).status_code == 503
    attach(app, Services(plane(view=FakeView()), FakeControl(), TOKEN.encode(), 2048))  # type: ignore[arg-type]
    assert TestClient(frozen).post("/v2/models/m/versions/2/infer", json=TEXT).status_code == 200
    assert TestClient(build_app()).post("/v2/models/m/infer", json=TEXT).status_code == 503  # another app


def test_oip_infer_and_v1_predict_go_through_the_data_plane(client: tuple[TestClient, FakeControl]) -> None:
    c, _ = client
    r = c.post("/v2/models/m/versions/2/infer", json=TEXT)
    assert r.status_code == 200 and r.headers["x-model-version"] == "2"
    assert r.json()["outputs"][1] == {"name": "LABEL", "datatype": "BYTES", "shape": [1, 1], "data": ["positive"]}
    r = c.post("/v1/predict", json={"model": "m", "inputs": ["hi"], "version": "1"})
    assert r.json()["predictions"] == [{"label": "positive", "scores": {"negative": 0.25, "positive": 0.75}}]


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status", "field"),
    [("post", "/v2/models/m/infer", b"{}", {"Inference-Header-Content-Length": "zz"}, 400,
      "Inference-Header-Content-Length"),
     ("post", "/v2/models/m/infer", b"not json", {}, 400, "body"),
     ("post", "/v2/models/nope/infer", b'{"inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [1], "data": ["a"]}]}',
      {}, 404, "model"),
     ("post", "/v1/predict", b'{"inputs": [""]}', {}, 422, "inputs[0]"),
     ("post", "/v1/predict", b"x" * 3000, {}, 413, "body"),
     ("get", "/v2/models/BAD", None, {}, 400, "model")],
    ids=["header-length", "bad-json", "unknown-model", "blank-text", "too-big", "bad-model-name"],
)
def test_client_errors_name_the_field(client: tuple[TestClient, FakeControl], method: str, path: str,
                                      body: bytes | None, headers: dict, status: int, field: str) -> None:
    c, _ = client
    r = c.request(method, path, content=body, headers=headers)
    assert r.status_code == status and r.json()["error"].startswith(f"{field}:"), r.json()


@pytest.mark.parametrize("headers", [{}, {"authorization": "Bearer wrong"}], ids=["missing", "wrong"])
def test_admin_routes_check_the_token_before_the_model_or_body(client: tuple[TestClient, FakeControl],
                                                                headers: dict) -> None:
    c, control = client
    for path in ("/admin/models/nope", "/admin/models/m/rollouts/status"):
        assert c.get(path, headers=headers).status_code == 401
    assert c.post("/admin/models/m/traffic", headers=headers, content=b"x" * 3000).status_code == 401
    assert control.calls == []


def test_admin_routes_reach_the_control_for_a_served_model(client: tuple[TestClient, FakeControl]) -> None:
    c, control = client
    assert c.get("/admin/models/m", headers=ADMIN).json() == {"model": "m"}
    assert c.get("/admin/models/zz", headers=ADMIN).status_code == 404
    assert c.post("/admin/models/m/traffic", headers=ADMIN, json={"weights": {"1": 100}}).status_code == 200
    assert c.post("/admin/models/m/traffic", headers=ADMIN, json={"weights": "all"}).status_code == 422
    assert c.post("/admin/models/m/rollouts/pause", headers=ADMIN).status_code == 200
    assert control.calls == [("status", "m"), ("traffic", "m", {"1": 100.0}), ("command", "m", "pause")]


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "identity"])
def test_compressed_request_bodies_are_inflated(client: tuple[TestClient, FakeControl], encoding: str) -> None:
    import json
    import zlib

    raw = json.dumps(TEXT).encode()
    packed = {"gzip": lambda b: zlib.compress(b, wbits=31), "deflate": zlib.compress, "identity": bytes}[encoding](raw)
    r = client[0].post("/v2/models/m/infer", content=packed, headers={"Content-Encoding": encoding})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    ("body", "encoding", "status"),
    [(b"\x1f\x8b junk", "gzip", 400), (b"x" * 10, "br", 415), ("zeros", "gzip", 413)],
    ids=["corrupt", "unknown-encoding", "inflates-past-the-limit"],
)
def test_bad_compressed_bodies_are_4xx(client: tuple[TestClient, FakeControl], body: bytes | str, encoding: str,
                                       status: int) -> None:
    import zlib

    if body == "zeros":  # 100 kB of zeros gzip to ~100 bytes: under the limit sent, over it inflated
        body = zlib.compress(b"0" * 100_000, wbits=31)
    r = client[0].post("/v2/models/m/infer", content=body, headers={"Content-Encoding": encoding})
    assert r.status_code == status and r.json()["error"].split(":")[0] in ("body", "content-encoding")


def test_repository_index_and_stats_routes(client: tuple[TestClient, FakeControl]) -> None:
    c, _ = client
    assert c.post("/v2/repository/index", content=b"").status_code == 200
    assert c.post("/v2/repository/index", json={"ready": "yes"}).json()["error"].startswith("ready:")
    assert c.get("/v2/models/stats").json()["model_stats"][0]["name"] == "m"  # not a model called "stats"
    assert c.get("/v2/models/m/versions/2/config").json()["name"] == "m"


def test_no_route_runs_a_dependency_or_endpoint_in_the_thread_pool() -> None:
    """A plain `def` dependency or endpoint is run by FastAPI in its thread pool: a thread hop on
    every request (it cost a quarter of the stack's throughput, BENCHMARKS.md). All must be async."""
    import inspect

    from fastapi.routing import APIRoute

    def sync_calls(dependant, where: str) -> list[str]:  # noqa: ANN001 - fastapi's Dependant
        out = [] if dependant.call is None or inspect.iscoroutinefunction(dependant.call) else [
            f"{where}: {getattr(dependant.call, '__qualname__', dependant.call)}"]
        for sub in dependant.dependencies:
            out += sync_calls(sub, where)
        return out

    def api_routes(routes: list) -> list[APIRoute]:
        out: list[APIRoute] = []
        for r in routes:
            if isinstance(r, APIRoute):
                out.append(r)
            elif hasattr(r, "original_router"):  # an included router (FastAPI >= 0.16x keeps them whole)
                out += api_routes(r.original_router.routes)
        return out

    routes = api_routes(build_app().routes)
    found = [c for r in routes for c in sync_calls(r.dependant, r.path)]
    assert not found, f"run in the thread pool on every request: {found}"
    assert len(routes) >= 15 and any("/admin/" in r.path for r in routes)  # the routes were seen
