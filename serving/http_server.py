"""The ingress's own HTTP listener: uvicorn inside the Ingress replica, no proxy hop.

With Ray Serve's default proxy every request crosses one more Python process (the proxy parses
HTTP, then makes an actor call into the ingress replica, which calls back for the body):
~6 ms and a fifth of the CPU on 2 cores (BENCHMARKS.md). Ray Serve's own answer, "direct
ingress", lets each ingress replica serve HTTP itself, but on ports it allocates from a range
(30000-31000), so clients could not keep using the configured port.

This does the same with the configured port: each Ingress replica runs uvicorn on its own
thread and event loop, serving the same FastAPI app, bound to `host:port` with SO_REUSEPORT
so that several ingress replicas on one node share the port (the kernel spreads connections)
and a replacement replica can bind before the old one has gone. Serve still owns the
replica's lifecycle: a listener that died fails the replica's health check.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import threading
import time
from collections.abc import Callable

log = logging.getLogger("distilserve.http")


class PortInUseError(RuntimeError):
    pass


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def check_port_free(host: str, port: int) -> None:
    """Raise PortInUseError if something already listens on host:port.

    The probe binds *without* SO_REUSEPORT, so it also fails against a listener that set it
    (another distilserve on the same port would otherwise silently share it). It sets
    SO_REUSEADDR, as the listener itself does: connections of a server that just stopped linger
    in TIME_WAIT for about a minute and must not make the port look taken; a socket in LISTEN
    still refuses the bind.
    """
    probe = socket.socket(_family(host), socket.SOCK_STREAM)
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((host, port))
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EACCES):
            raise PortInUseError(f"port: {host}:{port} is already in use; pick another with --port") from None
        raise
    finally:
        probe.close()


def reuseport_socket(host: str, port: int, backlog: int = 2048) -> socket.socket:
    sock = socket.socket(_family(host), socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise PortInUseError(f"port: cannot listen on {host}:{port}: {e.strerror}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def event_loop_factory(choice: str = "auto") -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The listener's loop: uvloop's for 'uvloop', and for 'auto' where it is installed (uvicorn's own
    choice with loop='auto'); None (asyncio's default) for 'asyncio' or without uvloop."""
    if choice == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            raise RuntimeError("http_loop: 'uvloop' is not installed; use 'auto' or 'asyncio'") from None
        return None
    return uvloop.new_event_loop


class IngressHttpServer:
    """uvicorn on a daemon thread with its own event loop, serving `app` on host:port."""

    def __init__(self, app: object, host: str, port: int, loop: str = "auto") -> None:
        self.app, self.host, self.port = app, host, port
        self._loop_factory = event_loop_factory(loop)
        self._server = None
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None  # the listener's loop (the gRPC server joins it)

    def start(self, timeout_s: float = 30.0) -> None:
        import uvicorn

        sock = reuseport_socket(self.host, self.port)
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off",
            timeout_keep_alive=30, backlog=2048,
        )
        self._server = server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # not the main thread; Serve owns signals

        async def serve() -> None:
            self.loop = asyncio.get_running_loop()
            await server.serve(sockets=[sock])

        def run() -> None:
            try:
                with asyncio.Runner(loop_factory=self._loop_factory) as runner:
                    runner.run(serve())
            except BaseException as e:  # noqa: BLE001 - reported by alive()/start()
                self._error = e
                log.exception("ingress HTTP listener stopped")
            finally:
                sock.close()

        self._thread = threading.Thread(target=run, name="ingress-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"ingress HTTP listener on {self.host}:{self.port} failed: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()  # late, it would still start serving from a replica Serve is discarding
                raise TimeoutError(f"ingress HTTP listener on {self.host}:{self.port} not up after {timeout_s}s")
            time.sleep(0.01)
        log.info("ingress serving HTTP on http://%s:%d", self.host, self.port)

    def alive(self) -> bool:
        return bool(self._thread and self._thread.is_alive() and self._server and self._server.started
                    and not self._server.should_exit)

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout_s)
