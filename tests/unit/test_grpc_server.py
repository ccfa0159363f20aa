"""The gRPC servicer with the real grpc.aio server and `tritonclient.grpc`, over a DataPlane
whose view and transport are fakes (no Ray, no Triton): answers and error codes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from serving.grpc.server import IngressGrpcServer
from serving.http_server import PortInUseError
from serving.transport.failure import Failure
from tests.helpers import free_port
from tests.unit.test_dataplane import FakeTransport, FakeView, plane


@pytest.fixture()
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield loop
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def serve(loop: asyncio.AbstractEventLoop, transport: FakeTransport | None = None,
          view: FakeView | None = None) -> tuple[IngressGrpcServer, grpcclient.InferenceServerClient]:
    port = free_port()
    server = IngressGrpcServer(plane(view, transport), "127.0.0.1", port, 1_000_000, loop)
    server.start()
    return server, grpcclient.InferenceServerClient(f"127.0.0.1:{port}")


def text_input(*texts: str) -> grpcclient.InferInput:
    inp = grpcclient.InferInput("TEXT", [len(texts), 1], "BYTES")
    inp.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_))
    return inp


def test_tritonclient_calls_are_answered_from_the_data_plane(loop: asyncio.AbstractEventLoop) -> None:
    view = FakeView()
    server, client = serve(loop, view=view)
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.get_server_metadata().name == "distilserve"
        assert client.is_model_ready("m") is False  # FakeTransport: version 2 of the 50/50 split is not ready
        assert client.is_model_ready("m", "1") is True
        meta = client.get_model_metadata("m")
        assert list(meta.versions) == ["1", "2"] and list(meta.inputs[0].shape) == [-1, 1]
        result = client.infer("m", [text_input("good", "fine")], model_version="2", request_id="abc")
        assert result.as_numpy("LABEL").tolist() == [[b"positive"], [b"positive"]]
        assert result.as_numpy("PROBABILITIES").shape == (2, 2)
        assert result.get_response().model_version == "2" and result.get_response().id == "abc"
        assert view.recorded == [("abc.0", "2", "positive"), ("abc.1", "2", "positive")]  # recorded as over HTTP
        assert client.get_model_config("m", "1").config.name == "m"
        stats = client.get_inference_statistics("m").model_stats
        assert {s.version: s.inference_count for s in stats}["2"] == 2
        index = client.get_model_repository_index()
        assert [(m.name, m.version, m.state) for m in index.models] == [("m", "1", "READY"), ("m", "2", "UNAVAILABLE")]
    finally:
        client.close()
        server.stop()


@pytest.mark.parametrize("transport,call,status,start", [
    (None, lambda c: c.infer("x", [text_input("a")]), "StatusCode.NOT_FOUND", "model: unknown model 'x'"),
    (None, lambda c: c.infer("m", [text_input("a")], model_version="7"), "StatusCode.NOT_FOUND", "version:"),
    (None, lambda c: c.infer("m", [text_input("")]), "StatusCode.INVALID_ARGUMENT", "inputs[0].data[0]:"),
    (None, lambda c: c.get_model_metadata("Bad Name"), "StatusCode.INVALID_ARGUMENT", "model:"),
    (None, lambda c: c.get_model_config("m", "9"), "StatusCode.NOT_FOUND", "version:"),
    (FakeTransport(Failure("model", "exploded")), lambda c: c.infer("m", [text_input("a")]),
     "StatusCode.INTERNAL", "model 'm' version"),
    (FakeTransport(Failure("unavailable", "retry later")), lambda c: c.infer("m", [text_input("a")]),
     "StatusCode.UNAVAILABLE", "retry later"),
    (None, lambda c: c.infer("m", [text_input("x" * 2_000_000)]), "StatusCode.RESOURCE_EXHAUSTED", ""),
], ids=["unknown-model", "unknown-version", "blank", "bad-name", "config-version", "model-fault", "overload",
        "too-big"])
def test_errors_become_grpc_status_codes(loop: asyncio.AbstractEventLoop, transport: FakeTransport | None,
                                         call, status: str, start: str) -> None:
    server, client = serve(loop, transport)
    try:
        with pytest.raises(InferenceServerException) as err:
            call(client)
        assert err.value.status() == status and (err.value.message() or "").startswith(start), err.value
    finally:
        client.close()
        server.stop()


def test_overload_carries_a_retry_hint(loop: asyncio.AbstractEventLoop) -> None:
    import grpc
    from tritonclient.grpc import service_pb2 as pb
    from tritonclient.grpc import service_pb2_grpc

    server, client = serve(loop, FakeTransport(Failure("unavailable", "busy")))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
            req = pb.ModelInferRequest(model_name="m")
            req.inputs.add(name="TEXT", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hi")
            with pytest.raises(grpc.RpcError) as err:
                stub.ModelInfer(req)
        assert err.value.code() == grpc.StatusCode.UNAVAILABLE
        assert ("retry-after", "1") in tuple(err.value.trailing_metadata())
    finally:
        client.close()
        server.stop()


def test_a_taken_port_is_refused_by_name(loop: asyncio.AbstractEventLoop) -> None:
    import socket

    with socket.socket() as taken:  # a listener without SO_REUSEPORT: nobody may share it
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        server = IngressGrpcServer(plane(), "127.0.0.1", taken.getsockname()[1], 1_000_000, loop)
        with pytest.raises(PortInUseError, match="^grpc_port: "):
            server.start()


def test_grpc_joins_the_http_listeners_loop() -> None:
    """As the Ingress wires them: the HTTP listener's loop runs the gRPC server too (one loop for
    the data plane), and both stop."""
    from serving.http.app import build_app
    from serving.http_server import IngressHttpServer

    http = IngressHttpServer(build_app(), "127.0.0.1", free_port())
    http.start()
    try:
        assert http.loop is not None and http.loop.is_running()
        server = IngressGrpcServer(plane(), "127.0.0.1", free_port(), 1_000_000, http.loop)
        server.start()
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.port}")
        assert client.infer("m", [text_input("hi")], model_version="1").as_numpy("LABEL").shape == (1, 1)
        assert server.alive()
        client.close()
        server.stop()
        assert not server.alive()
    finally:
        http.stop()


def test_http_listener_is_stopped_when_the_grpc_listener_cannot_start() -> None:
    """A replica whose gRPC port is taken fails whole: its HTTP port is not left answering (a
    client would see a good answer, then connection refused once Serve discards the replica)."""
    import socket

    import httpx

    from serving.http_server import check_port_free
    from serving.listeners import start_listeners

    async def app(scope, receive, send):  # noqa: ANN001 - a bare ASGI app
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    http_port, grpc_port = free_port(), free_port()
    taken = socket.socket()
    taken.bind(("127.0.0.1", grpc_port))
    taken.listen(1)  # no SO_REUSEPORT: gRPC cannot share it
    try:
        with pytest.raises(PortInUseError, match=f"grpc_port: cannot listen on 127.0.0.1:{grpc_port}"):
            start_listeners(app, plane(), "127.0.0.1", http_port, grpc_port, 1_000_000)
    finally:
        taken.close()
    check_port_free("127.0.0.1", http_port)  # nothing listens there any more
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{http_port}/", timeout=2)
    # With a free gRPC port both come up, and both answer.
    http, grpc_server = start_listeners(app, plane(), "127.0.0.1", http_port, free_port(), 1_000_000)
    try:
        assert httpx.get(f"http://127.0.0.1:{http_port}/", timeout=5).text == "ok"
        assert grpc_server is not None and grpc_server.alive()
        assert grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_server.port}").is_server_live()
    finally:
        if grpc_server is not None:
            grpc_server.stop()
        http.stop()
