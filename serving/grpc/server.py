"""Triton's `inference.GRPCInferenceService` on the ingress, answered by the HTTP side's DataPlane.

The servicer only translates (serving/grpc/codec.py) and calls the same `DataPlane` as the HTTP
routers: version choice, cache-free inference, records, shadows and statistics are not
implemented twice. An `ApiError` leaves as the matching gRPC status with the same message (the
field named), an overload with a `retry-after` trailer; anything else is logged and answered
INTERNAL without details.

The listener is a grpc.aio server on the event loop of the ingress's HTTP listener: the data
plane's transport (micro-batcher, Triton clients) belongs to one loop. grpc sets SO_REUSEPORT, so
several ingress replicas on one node share the port as they share the HTTP one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import grpc
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc

from serving.dataplane import DataPlane
from serving.errors import ApiError
from serving.grpc import codec
from serving.http_server import PortInUseError
from serving.triton.codec import CodecError

log = logging.getLogger("distilserve.grpc")
R = TypeVar("R")
EXTENSIONS = ["binary_tensor_data", "classification", "model_configuration", "statistics", "model_repository"]


def answered(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """ApiError -> its gRPC status and message; any other fault -> INTERNAL, logged, no details."""

    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> R:
        try:
            return await method(self, request, context)
        except ApiError as e:
            await context.abort(codec.status_code(e.status), e.message, codec.trailing_metadata(e.headers))
        except Exception:  # noqa: BLE001 - a server fault never leaks its details
            log.exception("unhandled error in gRPC %s", method.__name__)
            await context.abort(grpc.StatusCode.INTERNAL, "internal server error")
        raise AssertionError("unreachable: abort raises")

    return wrapper


class InferenceServicer(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The OIP calls distilserve answers over HTTP; the rest stay UNIMPLEMENTED (the base class)."""

    def __init__(self, plane: DataPlane) -> None:
        self.plane = plane

    @answered
    async def ServerLive(self, request: pb.ServerLiveRequest, context: Any) -> pb.ServerLiveResponse:  # noqa: N802
        return pb.ServerLiveResponse(live=True)

    @answered
    async def ServerReady(self, request: pb.ServerReadyRequest, context: Any) -> pb.ServerReadyResponse:  # noqa: N802
        return pb.ServerReadyResponse(ready=not self.plane.models_without_traffic())

    @answered
    async def ServerMetadata(self, request: Any, context: Any) -> pb.ServerMetadataResponse:  # noqa: N802
        return pb.ServerMetadataResponse(name="distilserve", version="0.1.0", extensions=EXTENSIONS)

    @answered
    async def ModelReady(self, request: pb.ModelReadyRequest, context: Any) -> pb.ModelReadyResponse:  # noqa: N802
        if request.version:
            return pb.ModelReadyResponse(ready=await self.plane.version_ready(request.name, request.version))
        return pb.ModelReadyResponse(ready=await self.plane.model_ready(request.name))

    @answered
    async def ModelMetadata(self, request: pb.ModelMetadataRequest, context: Any) -> pb.ModelMetadataResponse:  # noqa: N802
        if request.version:
            return codec.model_metadata(self.plane.version_metadata(request.name, request.version))
        return codec.model_metadata(self.plane.model_metadata(request.name))

    @answered
    async def ModelInfer(self, request: pb.ModelInferRequest, context: Any) -> pb.ModelInferResponse:  # noqa: N802
        try:
            req = codec.parse_infer_request(request, self.plane.limits)
        except CodecError as e:
            raise self.plane.refuse("grpc", 400, str(e)) from None
        rid = req.request_id or uuid.uuid4().hex
        model = request.model_name
        result = await self.plane.infer(model, request.model_version or None, None, req.texts, route="grpc",
                                        request_id=rid)
        names = await self.plane.label_names(model, result.version) if req.class_count else None
        return codec.build_infer_response(model, result.version, req, result.probs, result.labels, names)

    @answered
    async def ModelConfig(self, request: pb.ModelConfigRequest, context: Any) -> pb.ModelConfigResponse:  # noqa: N802
        return codec.model_config(await self.plane.model_config(request.name, request.version or None))

    @answered
    async def ModelStatistics(self, request: pb.ModelStatisticsRequest, context: Any) -> pb.ModelStatisticsResponse:  # noqa: N802
        return codec.statistics(self.plane.statistics(request.name or None, request.version or None))

    @answered
    async def RepositoryIndex(self, request: pb.RepositoryIndexRequest, context: Any) -> pb.RepositoryIndexResponse:  # noqa: N802
        return codec.repository_index(await self.plane.repository_index(request.ready))


def address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class IngressGrpcServer:
    """A grpc.aio server for `plane` on `host:port`, run on `loop` (the HTTP listener's)."""

    def __init__(self, plane: DataPlane, host: str, port: int, max_message_bytes: int,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.plane, self.host, self.port, self.max_message_bytes, self.loop = plane, host, port, max_message_bytes, loop
        self._server: grpc.aio.Server | None = None

    async def _start(self) -> grpc.aio.Server:
        server = grpc.aio.server(options=[
            ("grpc.so_reuseport", 1),  # several ingress replicas share the port, as over HTTP
            # The body limit of HTTP; a bigger message is RESOURCE_EXHAUSTED (HTTP's 413).
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ])
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceServicer(self.plane), server)
        try:
            bound = server.add_insecure_port(address(self.host, self.port))
        except RuntimeError as e:
            raise PortInUseError(f"grpc_port: cannot listen on {address(self.host, self.port)}: {e}") from None
        if bound == 0:
            raise PortInUseError(f"grpc_port: cannot listen on {address(self.host, self.port)}")
        await server.start()
        return server

    def start(self, timeout_s: float = 30.0) -> None:
        self._server = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout_s)
        log.info("ingress serving gRPC on %s", address(self.host, self.port))

    def alive(self) -> bool:
        return self._server is not None and self.loop.is_running()

    def stop(self, grace_s: float = 2.0) -> None:
        server, self._server = self._server, None
        if server is None or not self.loop.is_running():
            return
        try:
            asyncio.run_coroutine_threadsafe(server.stop(grace_s), self.loop).result(grace_s + 3)
        except Exception:  # noqa: BLE001 - best effort at shutdown
            log.warning("gRPC listener did not stop cleanly", exc_info=True)
