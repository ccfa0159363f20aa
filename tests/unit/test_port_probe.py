"""The port probe of `distilserve serve`: a port left in TIME_WAIT by a stopped server is free,
a port with a listener on it is not."""

from __future__ import annotations

import socket

import pytest

from serving.http_server import PortInUseError, check_port_free, reuseport_socket
from tests.ports import time_wait_on


def _server_with_closed_clients(n: int = 3) -> tuple[socket.socket, int]:
    """A listener that served `n` clients and closed each connection first (its side goes to
    TIME_WAIT, as when a server stops while clients are connected)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    for _ in range(n):
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = server.accept()
        client.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.sendall(b"pong")
        assert client.recv(4) == b"pong"
        conn.close()  # the server closes first: its end of the connection enters TIME_WAIT
        client.close()
    return server, port


def test_probe_accepts_a_port_in_time_wait_and_refuses_a_listener() -> None:
    server, port = _server_with_closed_clients()
    with pytest.raises(PortInUseError, match=f"127.0.0.1:{port} is already in use"):
        check_port_free("127.0.0.1", port)  # the listener is still up
    server.close()
    if time_wait_on(port) == 0:
        pytest.fail(f"the test set-up left no TIME_WAIT socket on port {port}")
    check_port_free("127.0.0.1", port)  # only TIME_WAIT left: free, as it is for our own listener
    listener = reuseport_socket("127.0.0.1", port)  # what the ingress binds next
    try:
        with pytest.raises(PortInUseError):
            check_port_free("127.0.0.1", port)  # a SO_REUSEPORT listener is still refused
    finally:
        listener.close()
