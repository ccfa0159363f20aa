"""Free loopback ports for the servers tests start."""

from __future__ import annotations

import random
import socket

# Ports for the servers a test starts: below Linux's ephemeral range (32768-60999 by default) and
# above Ray's worker ports (10002-19999). A port the kernel hands out for "port 0" can be handed out
# again as the local port of an outgoing connection (Ray opens hundreds) before the server binds
# it, and an address in use by a connection cannot be listened on. The likeliest cause of CI's
# failure at stop 25: `distilserve serve` answered on its HTTP port, then refused connections, as
# an ingress replica whose gRPC port is taken does while Serve replaces it.
TEST_PORTS = range(20000, 32768)


def free_port() -> int:
    """A port nothing listens on or is connected from now, outside the ephemeral range."""
    return distinct_free_ports(1)[0]


def distinct_free_ports(n: int, exclude: tuple[int, ...] = ()) -> list[int]:
    """`n` different free ports from TEST_PORTS, all held at once while they are chosen (Ray refuses
    to start when two of its components share one)."""
    skip = set(exclude)
    socks: list[socket.socket] = []
    try:
        for _ in range(200 + 20 * n):
            if len(socks) == n:
                return [s.getsockname()[1] for s in socks]
            port = random.choice(TEST_PORTS)
            if port in skip:
                continue
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
        raise RuntimeError(f"no {n} free ports in {TEST_PORTS}")
    finally:
        for s in socks:
            s.close()


def time_wait_on(port: int) -> int:
    """Sockets in TIME_WAIT whose local port is `port` (a stopped server's closed connections)."""
    import psutil

    return sum(1 for c in psutil.net_connections("tcp")
               if c.laddr and c.laddr.port == port and c.status == psutil.CONN_TIME_WAIT)
