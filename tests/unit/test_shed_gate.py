"""The early 429 (serving/http/shed_gate.py): path and body tables, the data plane's certainty rule
as a table, and the gate in front of the real FastAPI app."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from fastapi.testclient import TestClient

from serving.config import BatchingSettings, SheddingSettings
from serving.control.admin import AdminControl
from serving.dataplane import DataPlane
from serving.http.app import attach, build_app
from serving.http.deps import Services
from serving.http.shed_gate import ShedGate, infer_target, predict_fields
from serving.metrics import Metrics
from serving.state import TrafficTable
from serving.transport.admission import VersionQueue
from serving.transport.transport import Transport
from serving.triton import codec
from tests.unit.test_dataplane import FakeView


@pytest.mark.parametrize(
    ("method", "path", "expected"),
    [
        ("POST", "/v1/predict", ("v1", None, None)),
        ("POST", "/v2/models/m/infer", ("v2", "m", None)),
        ("POST", "/v2/models/m/versions/3/infer", ("v2", "m", "3")),
        ("GET", "/v1/predict", None),
        ("POST", "/v1/feedback", None),
        ("POST", "/v2/models//infer", None),
        ("POST", "/v2/models/m/versions//infer", None),
        ("POST", "/v2/models/m/ready", None),
        ("POST", "/v2/models/m/infer/extra", None),
        ("POST", "/admin/traffic", None),
    ],
)
def test_infer_target(method: str, path: str, expected: tuple | None) -> None:
    assert infer_target(method, path) == expected


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"inputs": ["a"]}', ("sentiment", None, None)),  # the request model's default
        (b'{"model": "m", "inputs": ["a", "b"], "version": "2", "user_id": "u"}', ("m", "2", "u")),
        (b'not json', None),
        (b'["a"]', None),
        (b'{"model": 5, "inputs": ["a"]}', None),
        (b'{"model": "m", "inputs": ["a"], "version": 2}', None),
        (b'{"model": "m", "inputs": []}', None),  # 422 naming inputs, even under overload
        (b'{"model": "m", "inputs": "a"}', None),
        (b'{"model": "m", "inputs": ["a", 3]}', None),
        (b'{"model": "m"}', None),
        (b'\xff\xfe', None),
        (b'{"inputs": ' + b'[' * 100_000 + b']' * 100_000 + b'}', None),  # the parser's recursion limit: no 500
    ],
)
def test_predict_fields(body: bytes, expected: tuple | None) -> None:
    assert predict_fields(body) == expected


class IdleTransport(Transport):
    """A transport whose queues the test sets; its downstream answers at once."""

    def __init__(self, enabled: bool = True) -> None:
        super().__init__(BatchingSettings(enabled=False), Metrics(),
                         shedding=SheddingSettings(enabled=enabled, min_queue=4, max_queue=4))
        self.calls = 0

    async def _call_once(self, model: str, version: str, texts: list[str]):  # noqa: ANN202
        self.calls += 1
        return np.tile([[0.25, 0.75]], (len(texts), 1)).astype(np.float32), ["positive"] * len(texts)

    def fill(self, *versions: str) -> None:
        for v in versions:
            self.queues[("m", v)] = VersionQueue(queued=4)  # the bound is 4: one more text is refused


CANARY = {"m": TrafficTable(weights={"1": 90.0, "2": 10.0})}


@pytest.mark.parametrize(
    ("full", "pinned", "user", "tables", "cache", "enabled", "refused"),
    [
        ((), None, None, CANARY, False, True, False),            # nothing queued
        (("1",), None, None, CANARY, False, True, False),        # the canary could still take it
        (("1", "2"), None, None, CANARY, False, True, True),      # every live version is full: certain
        (("2",), "2", None, CANARY, False, True, True),           # pinned to the full one
        (("1",), "2", None, CANARY, False, True, False),          # pinned to the free one
        (("1", "2"), "9", None, CANARY, False, True, False),      # unknown version: the normal path's 404
        (("1", "2"), None, None, {}, False, True, False),         # no traffic table yet: the normal path's 503
        (("1", "2"), None, None, CANARY, True, True, False),      # a cache might answer it
        (("1", "2"), None, None, CANARY, False, False, False),    # shedding off
        (("1", "2"), None, "alice", CANARY, False, True, True),   # sticky user, both full
    ],
    ids=["idle", "canary-free", "all-full", "pinned-full", "pinned-free", "pinned-unknown", "no-table",
         "cache", "off", "sticky-user"],
)
def test_refuse_early_only_when_the_429_is_certain(full: tuple, pinned: str | None, user: str | None, tables: dict,
                                                   cache: bool, enabled: bool, refused: bool) -> None:
    t = IdleTransport(enabled)
    t.fill(*full)
    plane = DataPlane(FakeView(tables=tables), t, t.metrics, codec.Limits(), object() if cache else None)  # type: ignore[arg-type]
    err = plane.refuse_early("m", pinned, user, "v1")
    assert (err is not None) == refused
    if err is not None:
        assert err.status == 429 and err.headers["Retry-After"] == "1" and "model 'm'" in err.message
        version = err.message.split("version ")[1].split(" ")[0]
        sample = t.metrics.registry.get_sample_value
        assert sample("distilserve_requests_total", {"model": "m", "version": version, "route": "v1", "code": "429"}) == 1
        assert sample("distilserve_shed_requests_total", {"model": "m", "version": version, "source": "user"}) == 1
        assert sample("distilserve_shed_early_requests_total", {"model": "m", "version": version}) == 1


def test_sticky_user_is_refused_early_only_when_their_own_version_is_full() -> None:
    t = IdleTransport()
    plane = DataPlane(FakeView(tables=CANARY), t, t.metrics, codec.Limits())
    users = [f"u{i}" for i in range(40)]
    own = {u: CANARY["m"].choose(u, 0.0) for u in users}
    assert set(own.values()) == {"1", "2"}
    t.fill("1")
    assert {u for u in users if plane.refuse_early("m", None, u, "v1")} == {u for u in users if own[u] == "1"}


class Counting:
    """Counts the requests that reach the FastAPI app behind the gate."""

    def __init__(self, app) -> None:  # noqa: ANN001
        self.app, self.calls = app, 0

    async def __call__(self, scope, receive, send) -> None:  # noqa: ANN001
        if scope["type"] == "http":
            self.calls += 1
        await self.app(scope, receive, send)


@pytest.fixture
def gated() -> tuple[TestClient, IdleTransport, Counting]:
    app = build_app()
    t = IdleTransport()
    view = FakeView(tables={"m": TrafficTable(weights={"1": 100.0})}, versions={"m": {"1"}})
    plane = DataPlane(view, t, t.metrics, codec.Limits())
    control = AdminControl(None, ["m"], view.refresh, t.metrics.render, t.ready)  # type: ignore[arg-type]
    attach(app, Services(plane, control, None, 2048))
    inner = Counting(app)
    return TestClient(ShedGate(inner, plane.refuse_early, 2048)), t, inner


def test_the_gate_answers_a_certain_429_without_running_the_app(gated: tuple) -> None:
    client, t, inner = gated
    t.fill("1")
    r = client.post("/v1/predict", json={"model": "m", "inputs": ["a"]})
    assert r.status_code == 429 and r.headers["retry-after"] == "1" and "overloaded" in r.json()["error"]
    r = client.post("/v2/models/m/infer", json={"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES",
                                                           "data": ["a"]}]})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    assert inner.calls == 0 and t.calls == 0
    # Not certain, so the app decides: bad input is named, an unknown model is a 404, other routes work.
    r = client.post("/v1/predict", json={"model": "m", "inputs": []})
    assert r.status_code == 422 and "inputs" in r.json()["error"]
    assert client.post("/v1/predict", json={"model": "nope", "inputs": ["a"]}).status_code == 404
    assert client.get("/v2/health/live").status_code == 200
    assert inner.calls == 3


def test_the_gate_replays_the_body_when_the_app_decides(gated: tuple) -> None:
    client, t, inner = gated
    r = client.post("/v1/predict", json={"model": "m", "inputs": ["a", "b"]})
    assert r.status_code == 200 and [p["label"] for p in r.json()["predictions"]] == ["positive", "positive"]
    big = json.dumps({"model": "m", "inputs": ["x" * 3000]})  # over the gate's 2048 bytes: not read by it
    r = client.post("/v1/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413
    assert inner.calls == 2 and t.calls == 1


def test_replay_hands_back_a_partial_read_then_the_rest() -> None:
    from serving.http.shed_gate import _read, _replay

    async def main() -> None:
        msgs = [{"type": "http.request", "body": b"ab", "more_body": True},
                {"type": "http.request", "body": b"cd", "more_body": True},
                {"type": "http.request", "body": b"ef", "more_body": False}]
        it = iter(msgs)

        async def receive():  # noqa: ANN202
            return next(it)

        body, more = await _read(receive, 3)
        assert (body, more) == (b"abcd", True)
        again = _replay(body, more, receive)
        got = [await again(), await again()]
        assert b"".join(m["body"] for m in got) == b"abcdef" and got[-1]["more_body"] is False

    asyncio.run(main())
