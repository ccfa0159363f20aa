"""The ingress's short path (endpoint pools), the autoscaling policy that still sees its load,
Triton's request-time counter, and the ingress's own HTTP listener."""

from __future__ import annotations

import asyncio
import random
import sys

import pytest

from serving.autoscale_policy import desired_replicas
from serving.backends import texts_in_flight, triton_counters
from serving.http_server import IngressHttpServer, PortInUseError, check_port_free
from serving.transport.endpoints import Endpoint, EndpointPool, EndpointWatcher, parse
from tests.ports import free_port

NODE, OTHER = "node-a", "node-b"


def ep(grpc: str, *, app: str = "sentiment-v1", node: str = NODE, ts: float = 100.0, replica: str | None = None,
       instances: int = 1) -> Endpoint:
    return Endpoint(app=app, replica=replica or grpc, node=node, grpc=grpc, ts=ts, instances=instances)


@pytest.mark.parametrize(
    ("endpoints", "now", "usable"),
    [
        ([ep("a:1"), ep("a:2")], 101.0, ["a:1", "a:2"]),
        ([ep("a:1"), ep("b:1", node=OTHER)], 101.0, ["a:1"]),  # other nodes' Tritons listen on their loopback
        ([ep("a:1", ts=80.0), ep("a:2", ts=95.0)], 101.0, ["a:2"]),  # 21 s without a health check: stale
        ([], 101.0, []),
    ],
)
def test_pool_keeps_fresh_same_node_endpoints(endpoints: list[Endpoint], now: float, usable: list[str]) -> None:
    pool = EndpointPool(NODE, max_age_s=10.0)
    pool.update(endpoints, now)
    assert [e.grpc for e in pool.endpoints] == usable


def test_pick_prefers_fewest_in_flight_and_none_when_empty() -> None:
    pool = EndpointPool(NODE)
    assert pool.pick(100.0) is None  # no endpoint yet: the caller uses Serve's handle
    pool.update([ep("a:1"), ep("a:2")], 100.0)
    first = pool.pick(100.0, random.Random(0))
    assert first is not None
    pool.acquire(first)
    second = pool.pick(100.0, random.Random(0))
    assert second is not None and second.grpc != first.grpc
    pool.acquire(second)
    pool.release(first)
    assert pool.pick(100.0).grpc == first.grpc  # type: ignore[union-attr]
    pool.release(first)  # never below zero
    assert pool.inflight[first.grpc] == 0


def test_with_replicas_on_other_nodes_only_the_local_share_takes_the_short_path() -> None:
    pool = EndpointPool(NODE)
    pool.update([ep("a:1"), ep("b:1", node=OTHER), ep("b:2", node=OTHER), ep("b:3", node=OTHER)], 100.0)
    rng = random.Random(1)
    short = sum(pool.pick(100.0, rng) is not None for _ in range(4000))
    assert 850 < short < 1150  # about 1 in 4: one of the four replicas is local


def test_benched_endpoint_is_skipped_until_its_cooldown_ends() -> None:
    pool = EndpointPool(NODE, cooldown_s=10.0)
    pool.update([ep("a:1")], 100.0)
    pool.bench(pool.endpoints[0], 100.0)
    assert pool.pick(105.0) is None
    pool.update([ep("a:1", ts=106.0)], 106.0)  # still listed (and fresh): still benched
    assert pool.pick(106.0) is None
    assert pool.pick(110.5).grpc == "a:1"  # type: ignore[union-attr]


def test_watcher_groups_by_application_and_forgets_vanished_ones() -> None:
    w = EndpointWatcher(NODE)
    w.apply([ep("a:1"), ep("a:2", app="sentiment-v2")], 100.0)
    assert {app: [e.grpc for e in p.endpoints] for app, p in w.pools.items()} == {
        "sentiment-v1": ["a:1"], "sentiment-v2": ["a:2"]}
    w.apply([ep("a:2", app="sentiment-v2")], 101.0)  # v1's replicas withdrew their endpoints
    assert w.pools["sentiment-v1"].endpoints == ()


@pytest.mark.parametrize(
    ("endpoints", "parallel"),
    [
        ([], None),  # no Triton known: calls go through Serve, uncapped
        ([ep("a:1")], 1),
        ([ep("a:1", instances=2)], 2),  # config.pbtxt instance_group count 2: two batches at once
        ([ep("a:1", instances=2), ep("a:2", instances=3)], 5),
        ([ep("a:1", instances=2), ep("b:1", node=OTHER, instances=2)], None),  # a replica elsewhere: Serve spreads
        ([ep("a:1", instances=2), ep("a:2", ts=80.0, instances=4)], 2),  # a stale endpoint does not count
    ],
)
def test_pool_parallel_sums_the_model_instances_of_local_tritons(endpoints: list[Endpoint], parallel: int | None) -> None:
    pool = EndpointPool(NODE, max_age_s=10.0)
    pool.update(endpoints, 101.0)
    assert pool.parallel() == parallel


@pytest.mark.parametrize(
    ("raw", "instances"),
    [
        (b'{"app": "a", "replica": "r", "node": "n", "grpc": "g:1", "ts": 1.0, "instances": 2}', 2),
        (b'{"app": "a", "replica": "r", "node": "n", "grpc": "g:1", "ts": 1.0}', 1),  # an older replica's entry
        (b'{"app": "a", "replica": "r", "node": "n", "grpc": "g:1", "ts": 1.0, "instances": 0}', 1),
    ],
)
def test_store_entries_carry_the_instance_count(raw: bytes, instances: int) -> None:
    endpoint = parse(raw)
    assert endpoint is not None and endpoint.instances == instances


def test_published_entry_parses_back_to_the_same_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.transport import endpoints

    stored: dict[str, str] = {}
    monkeypatch.setattr(endpoints.raycompat, "kv_put", lambda key, value: stored.__setitem__(key, value))
    original = ep("a:1", instances=3)
    endpoints.publish(original)
    assert [parse(v) for v in stored.values()] == [original]


@pytest.mark.parametrize("raw", [b"not json", b'[1, 2]', b'{"app": "x"}', b'{"app": "x", "replica": "r", "node": "n", "grpc": "g", "ts": "soon"}',
                                 b'{"app": "x", "replica": "r", "node": "n", "grpc": "g", "ts": 1, "instances": "two"}'])
def test_malformed_store_entries_are_ignored(raw: bytes) -> None:
    assert parse(raw) is None


@pytest.mark.parametrize(
    ("current", "target", "serve_requests", "triton", "target_ongoing", "desired"),
    [
        (1, 1, 0.0, 16.0, 8.0, 2.0),  # all load on the short path: Serve sees none, Triton sees it
        (1, 1, 16.0, 0.0, 8.0, 2.0),  # all on the handle path (no endpoint published)
        (2, 2, 6.0, 8.0, 8.0, 1.0),  # the two views overlap: the larger counts, not the sum
        (2, 2, 0.0, 4.0, 8.0, 0.5),  # idle enough to shrink (Serve applies min_replicas and delays)
        (0, 1, 0.0, 0.0, 8.0, 1.0),  # cold start: Serve's target
    ],
)
def test_autoscaling_counts_the_short_path(current: int, target: int, serve_requests: float, triton: float,
                                           target_ongoing: float, desired: float) -> None:
    assert desired_replicas(current, target, serve_requests, triton, target_ongoing) == pytest.approx(desired)


def test_triton_counters_sum_every_model_and_ignore_other_lines() -> None:
    page = "\n".join([
        "# HELP nv_inference_request_duration_us Cumulative inference request duration in microseconds",
        'nv_inference_request_duration_us{model="sentiment",version="1"} 1500000',
        'nv_inference_request_duration_us{model="other",version="2"} 500',
        'nv_inference_queue_duration_us{model="sentiment",version="1"} 99999',
        'nv_inference_request_success{model="sentiment",version="1"} 10',
        'nv_inference_count{model="sentiment",version="1"} 40',
        "nv_inference_request_duration_us{broken",
    ])
    assert triton_counters(page) == {"nv_inference_request_duration_us": 1_500_500,
                                     "nv_inference_request_success": 10, "nv_inference_count": 40}
    assert triton_counters("") == dict.fromkeys(triton_counters(""), 0.0)


def _c(duration_us: float, requests: float, texts: float) -> dict[str, float]:
    return {"nv_inference_request_duration_us": duration_us, "nv_inference_request_success": requests,
            "nv_inference_count": texts}


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (None, (1.0, _c(0, 0, 0)), 0.0),  # first reading
        ((0.0, _c(0, 0, 0)), (2.0, _c(4_000_000, 100, 100)), 2.0),  # 2 s of request time per second, 1 text each
        ((0.0, _c(0, 0, 0)), (1.0, _c(1_000_000, 25, 200)), 8.0),  # one request at a time, batches of 8 texts
        ((0.0, _c(5e6, 50, 50)), (1.0, _c(5e6, 50, 50)), 0.0),  # idle
        ((0.0, _c(9e9, 900, 900)), (1.0, _c(1e6, 10, 10)), 0.0),  # counters reset (Triton restarted)
    ],
)
def test_texts_in_flight_is_littles_law_weighted_by_texts_per_request(before, after, expected: float) -> None:
    assert texts_in_flight(before, after) == pytest.approx(expected)


def test_ingress_listener_serves_the_app_and_refuses_a_taken_port() -> None:
    import httpx
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ping")
    async def ping() -> dict:
        return {"pong": True}

    port = free_port()
    server = IngressHttpServer(app, "127.0.0.1", port)
    server.start()
    try:
        assert server.alive()
        assert httpx.get(f"http://127.0.0.1:{port}/ping", timeout=5).json() == {"pong": True}
        # A second distilserve on the same port is refused, though replicas of one share it.
        with pytest.raises(PortInUseError, match=f"port: 127.0.0.1:{port} is already in use"):
            check_port_free("127.0.0.1", port)
        sibling = IngressHttpServer(app, "127.0.0.1", port)  # another ingress replica (SO_REUSEPORT)
        sibling.start()
        sibling.stop()
    finally:
        server.stop()
    assert not server.alive()
    check_port_free("127.0.0.1", port)  # released


@pytest.mark.parametrize(("choice", "loop_module"), [("auto", "uvloop"), ("uvloop", "uvloop"), ("asyncio", "asyncio")])
def test_ingress_listener_runs_on_the_configured_event_loop(choice: str, loop_module: str) -> None:
    import httpx
    from fastapi import FastAPI

    pytest.importorskip("uvloop")  # installed with ray[serve]'s uvicorn[standard]
    app = FastAPI()

    @app.get("/loop")
    async def loop() -> dict:
        return {"module": type(asyncio.get_running_loop()).__module__.split(".")[0]}

    port = free_port()
    server = IngressHttpServer(app, "127.0.0.1", port, loop=choice)
    server.start()
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/loop", timeout=5).json() == {"module": loop_module}
    finally:
        server.stop()


def test_an_explicit_uvloop_that_is_not_installed_is_refused_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from serving.http_server import event_loop_factory

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert event_loop_factory("auto") is None  # auto falls back to asyncio's loop
    with pytest.raises(RuntimeError, match="http_loop: 'uvloop' is not installed"):
        event_loop_factory("uvloop")


def test_a_triton_that_is_not_there_is_unavailable_not_a_model_failure() -> None:
    """What the ingress's short path relies on to bench an endpoint and fall back to Serve."""
    import asyncio

    import tritonclient.grpc.aio as grpc_aio

    from serving.transport.failure import Failure
    from serving.transport.triton_grpc import triton_infer

    async def main() -> None:
        client = grpc_aio.InferenceServerClient(f"127.0.0.1:{free_port()}")
        with pytest.raises(Failure, match="unreachable") as err:
            await triton_infer(client, "sentiment", "1", ["x"], timeout_s=5)
        assert err.value.kind == "unavailable"
        await client.close()

    asyncio.run(main())
