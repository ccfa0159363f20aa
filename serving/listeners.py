"""The ingress replica's own listeners (HTTP, then gRPC on the HTTP listener's loop), started
together or not at all.

A replica whose constructor fails is discarded by Serve, which starts another. A listener it had
already opened would answer until Serve killed the actor, then vanish: a client would see
readiness and a good answer, then "connection refused" (CI, stop 25: `/v2/health/ready` and a
predict answered, the next connection was refused). So when the gRPC listener cannot start, the
HTTP listener is stopped before the error goes up, and the port is only ever served by replicas
that came up whole.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from serving.http_server import IngressHttpServer

if TYPE_CHECKING:
    from serving.dataplane import DataPlane
    from serving.grpc.server import IngressGrpcServer

log = logging.getLogger("distilserve.ingress")


def start_listeners(app: object, plane: DataPlane, host: str, port: int, grpc_port: int | None,
                    max_body_bytes: int, http_loop: str = "auto") -> tuple[IngressHttpServer, IngressGrpcServer | None]:
    """HTTP on host:port, and gRPC on host:grpc_port when set; either both run or neither does."""
    from serving.grpc.server import IngressGrpcServer

    http = IngressHttpServer(app, host, port, http_loop)
    http.start()
    grpc_server = None
    try:
        if grpc_port:
            if http.loop is None:
                raise RuntimeError("the HTTP listener has no event loop for the gRPC server")
            # On the HTTP listener's loop: the data plane's transport belongs to one event loop.
            grpc_server = IngressGrpcServer(plane, host, grpc_port, max_body_bytes, http.loop)
            grpc_server.start()
    except BaseException:
        log.error("gRPC listener on %s:%s did not start; stopping the HTTP listener on %s:%d", host, grpc_port,
                  host, port)
        http.stop()
        raise
    return http, grpc_server
