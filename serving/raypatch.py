"""Keep Ray Serve's per-replica gRPC server on loopback in single-node mode.

Ray Serve 2.60 starts an inter-deployment gRPC server in every replica on "[::]:0" — all
interfaces — with no setting to change it (serve/_private/replica.py). In single-node mode
(the default `distilserve serve` and every test) nothing outside this machine may reach a
listener, so each Ray worker runs this hook at start-up (runtime_env
`worker_process_setup_hook`) and the server binds 127.0.0.1 instead. Multi-node clusters
(`ray_address` set) do not install the hook: their replicas must be reachable by peers.

If a Ray upgrade drops the patched symbol, the hook raises (serving/raycompat.py) and the
worker fails to start: loudly, rather than quietly putting replica gRPC back on all interfaces.
"""

from __future__ import annotations

from serving import raycompat

HOOK = "serving.raypatch.bind_replica_grpc_to_loopback"


def loopback_address(address: str) -> str:
    """'[::]:PORT' -> '127.0.0.1:PORT'; any other address unchanged."""
    return "127.0.0.1:" + address.split(":")[-1] if address.startswith("[::]:") else address


def bind_replica_grpc_to_loopback() -> None:
    raycompat.patch_replica_grpc_bind(loopback_address)
