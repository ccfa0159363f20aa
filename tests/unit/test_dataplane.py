"""DataPlane and Transport without Ray: one version choice per request, cache, shadow, records,
and the one failure type turned into 500 / 503 once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest

from serving.config import BatchingSettings
from serving.dataplane import DataPlane
from serving.errors import ApiError
from serving.metrics import Metrics
from serving.traffic_table import TrafficTable
from serving.transport.failure import Failure
from serving.transport.transport import Transport
from serving.triton import codec

NAMES = ["negative", "positive"]


@dataclass
class FakeView:
    tables: dict = field(default_factory=lambda: {"m": TrafficTable(weights={"1": 50.0, "2": 50.0})})
    versions: dict = field(default_factory=lambda: {"m": {"1", "2"}})
    models: list = field(default_factory=lambda: ["m"])
    recorded: list = field(default_factory=list)

    def refresh(self) -> None: ...

    def labels(self, model: str, version: str) -> list[str] | None:
        return NAMES

    def record(self, request_id: str, model: str, version: str, label: str, user_id: str | None) -> None:
        self.recorded.append((request_id, version, label))

    def record_feedback(self, request_id: str, label: str | None, outcome: int | None) -> None: ...

    def close(self) -> None: ...


class FakeTransport:
    def __init__(self, fail: Failure | None = None) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.fail = fail

    async def infer(self, model: str, version: str, texts: list[str], *, shadow: bool = False):  # noqa: ANN201
        self.calls.append((version, list(texts)))
        if self.fail is not None:
            raise self.fail
        return np.tile([[0.25, 0.75]], (len(texts), 1)).astype(np.float32), ["positive"] * len(texts)

    async def ready(self, model: str, version: str) -> bool:
        return version == "1"

    async def model_config(self, model: str, version: str) -> dict:
        return {"name": model, "version_policy": {"specific": {"versions": [int(version)]}}}

    def close(self) -> None: ...


class FakeCache:
    def __init__(self, known: dict[str, dict]) -> None:
        self.known, self.asked = known, []

    def lookup_many(self, model: str, version: str, texts: list[str]) -> list:
        self.asked.append(version)
        return [self.known.get(t) for t in texts]


def plane(view: FakeView | None = None, transport: FakeTransport | None = None, cache: FakeCache | None = None):  # noqa: ANN201
    return DataPlane(view or FakeView(), transport or FakeTransport(), Metrics(), codec.Limits(), cache)


@pytest.mark.parametrize("cached", [True, False], ids=["cache-hit", "cache-miss"])
def test_a_cached_v1_request_draws_its_version_once(monkeypatch: pytest.MonkeyPatch, cached: bool) -> None:
    draws = []
    real_choose = TrafficTable.choose

    def counting(self: TrafficTable, user_id: str | None, u: float) -> str:
        draws.append(u)
        return real_choose(self, user_id, u)

    monkeypatch.setattr(TrafficTable, "choose", counting)
    known = {"hello": {"label": "negative", "scores": {"negative": 0.9, "positive": 0.1}}} if cached else {}
    cache, transport = FakeCache(known), FakeTransport()
    p = plane(transport=transport, cache=cache)
    version, preds, hit = asyncio.run(p.predict("m", None, None, ["hello"], "rid"))
    assert len(draws) == 1 and hit is cached
    assert cache.asked == [version]  # the cache was asked for the version that answers
    assert transport.calls == ([] if cached else [(version, ["hello"])])
    assert preds[0]["label"] == ("negative" if cached else "positive")


def test_predictions_are_recorded_per_text_and_scores_named() -> None:
    view = FakeView(tables={"m": TrafficTable(weights={"1": 100.0})})
    p = plane(view=view)
    version, preds, hit = asyncio.run(p.predict("m", None, None, ["a", "b"], "rid"))
    assert (version, hit) == ("1", False)
    assert preds == [{"label": "positive", "scores": {"negative": 0.25, "positive": 0.75}}] * 2
    assert view.recorded == [("rid.0", "1", "positive"), ("rid.1", "1", "positive")]


@pytest.mark.parametrize(
    ("failure", "status", "retry_after"),
    [(Failure("model", "bad input"), 500, None), (Failure("unavailable", "version 1 of model 'm' is down"), 503, "1")],
    ids=["model-500", "unavailable-503"],
)
def test_a_transport_failure_becomes_one_api_error(failure: Failure, status: int, retry_after: str | None) -> None:
    p = plane(view=FakeView(tables={"m": TrafficTable(weights={"1": 100.0})}), transport=FakeTransport(failure))
    with pytest.raises(ApiError) as err:
        asyncio.run(p.infer("m", None, None, ["x"], route="v2", request_id="r"))
    assert err.value.status == status and failure.message in err.value.message
    assert err.value.headers.get("Retry-After") == retry_after
    assert f'code="{status}"' in p.metrics_text().decode()


@pytest.mark.parametrize(
    ("model", "pinned", "status", "field"),
    [("Bad Name", None, 400, "model"), ("other", None, 404, "model"), ("m", "0", 400, "version"),
     ("m", "9", 404, "version")],
    ids=["bad-model-name", "unknown-model", "bad-version", "unknown-version"],
)
def test_names_are_checked_before_any_call(model: str, pinned: str | None, status: int, field: str) -> None:
    transport = FakeTransport()
    with pytest.raises(ApiError) as err:
        asyncio.run(plane(transport=transport).infer(model, pinned, None, ["x"], route="v2", request_id="r"))
    assert err.value.status == status and err.value.message.startswith(f"{field}:")
    assert transport.calls == []


def test_no_live_version_is_503_with_retry_after() -> None:
    with pytest.raises(ApiError) as err:
        plane(view=FakeView(tables={})).choose("m", None, None)
    assert err.value.status == 503 and err.value.headers == {"Retry-After": "1"}


def test_shadow_copy_goes_to_the_shadow_version_and_never_for_pinned_requests() -> None:
    async def main(pinned: str | None) -> list:
        view = FakeView(tables={"m": TrafficTable(weights={"1": 100.0}, shadow_version="2", shadow_share=100.0)})
        transport = FakeTransport()
        p = plane(view=view, transport=transport)
        await p.infer("m", pinned, None, ["x"], route="v2", request_id="r")
        await asyncio.gather(*p._tasks)
        return [v for v, _ in transport.calls]

    assert asyncio.run(main(None)) == ["1", "2"]
    assert asyncio.run(main("1")) == ["1"]


# ---- Transport: one retry for unavailability, none for a model fault ----------------------------
class ScriptedTransport(Transport):
    def __init__(self, results: list, batching: bool) -> None:
        super().__init__(BatchingSettings(enabled=batching, max_wait_ms=0), Metrics())
        self.results, self.sent = results, 0

    async def _call(self, model: str, version: str, texts: list[str]):  # noqa: ANN202
        self.sent += 1
        return self.results.pop(0)


OK = (np.zeros((1, 2), dtype=np.float32), ["positive"])


@pytest.mark.parametrize("batching", [True, False], ids=["batched", "direct"])
@pytest.mark.parametrize(
    ("results", "outcome", "sent"),
    [([Failure("unavailable", "down"), OK], "ok", 2),   # a dead replica: sent once more, Serve routes it elsewhere
     ([Failure("unavailable", "down"), Failure("unavailable", "still")], "unavailable", 2),
     ([Failure("model", "boom"), OK], "model", 1)],      # a model fault is not retried
    ids=["retry-succeeds", "retry-fails", "model-fault-not-retried"],
)
def test_transport_retries_unavailable_once(results: list, outcome: str, sent: int, batching: bool) -> None:
    t = ScriptedTransport(list(results), batching)
    try:
        got = asyncio.run(t.infer("m", "1", ["x"]))
        assert outcome == "ok" and got[1] == ["positive"]
    except Failure as e:
        assert e.kind == outcome
    assert t.sent == sent


def test_a_failure_crosses_the_ray_hop_as_a_value() -> None:
    import pickle  # noqa: S403 - what Ray does to a returned value; our own object, never a file

    back = pickle.loads(pickle.dumps(Failure("model", "bad input")))  # noqa: S301
    assert (back.kind, back.message, str(back)) == ("model", "bad input", "bad input")


def test_triton_extensions_statistics_config_and_repository_index() -> None:
    view = FakeView(tables={"m": TrafficTable(weights={"1": 100.0})})
    p = plane(view=view, transport=FakeTransport())
    asyncio.run(p.infer("m", None, None, ["a", "b"], route="v2", request_id="r"))
    stats = p.statistics("m", None)["model_stats"]
    assert [(s["version"], s["inference_count"], s["execution_count"]) for s in stats] == [("1", 2, 1), ("2", 0, 0)]
    assert stats[0]["inference_stats"]["success"]["count"] == 1 and stats[0]["last_inference"] > 0
    assert p.statistics(None, None)["model_stats"] == stats
    assert [s["version"] for s in p.statistics("m", "2")["model_stats"]] == ["2"]
    with pytest.raises(ApiError):
        p.statistics("m", "7")
    # The config of the version with the most traffic unless one is named.
    assert asyncio.run(p.model_config("m", None))["version_policy"]["specific"]["versions"] == [1]
    assert asyncio.run(p.model_config("m", "2"))["version_policy"]["specific"]["versions"] == [2]
    index = asyncio.run(p.repository_index(ready_only=False))
    assert [(e["version"], e["state"]) for e in index] == [("1", "READY"), ("2", "UNAVAILABLE")]
    assert [e["version"] for e in asyncio.run(p.repository_index(ready_only=True))] == ["1"]
