"""tests/ports.py: the ports tests give their servers (and Ray's node components) are distinct,
free and outside the kernel's ephemeral range."""

from __future__ import annotations

import socket

from tests.ports import TEST_PORTS, distinct_free_ports, free_port


def _ephemeral() -> range:
    lo, hi = map(int, open("/proc/sys/net/ipv4/ip_local_port_range").read().split())
    return range(lo, hi + 1)


def test_ports_are_distinct_free_and_not_ephemeral() -> None:
    exclude = tuple(range(20000, 26000))  # nearly half the range: the exclusion must hold
    ports = distinct_free_ports(6, exclude)
    assert len(set(ports)) == 6
    assert all(p in TEST_PORTS and p not in exclude and p not in _ephemeral() for p in ports), ports
    for p in [*ports, free_port()]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))  # free: nothing kept them


def test_a_taken_port_is_never_handed_out() -> None:
    taken = []
    try:
        for p in TEST_PORTS[:4000]:  # hold a third of the range
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
                s.listen()
            except OSError:
                s.close()
                continue
            taken.append(s)
        held = {s.getsockname()[1] for s in taken}
        assert not held & set(distinct_free_ports(20)) and free_port() not in held
    finally:
        for s in taken:
            s.close()
