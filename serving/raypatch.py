"""Keep Ray Serve's per-replica gRPC server on loopback in single-node mode.

Ray Serve 2.60 starts an inter-deployment gRPC server in every replica on "[::]:0" — all
interfaces — with no setting to change it (serve/_private/replica.py). In single-node mode
(the default `distilserve serve` and every test) nothing outside this machine may reach a
listener, so each Ray worker runs this hook at start-up (runtime_env
`worker_process_setup_hook`) and the server binds 127.0.0.1 instead. Multi-node clusters
(`ray_address` set) do not install the hook: their replicas must be reachable by peers.
"""

from __future__ import annotations

HOOK = "serving.raypatch.bind_replica_grpc_to_loopback"


def bind_replica_grpc_to_loopback() -> None:
    try:
        from ray.serve._private import replica
    except ImportError:  # Serve is not installed in this worker: nothing to patch
        return
    original = getattr(replica, "add_port_to_grpc_server", None)
    if original is None or getattr(original, "_distilserve_loopback", False):
        return

    def loopback(server, address: str):  # noqa: ANN001, ANN202 - mirrors Ray's private signature
        if address.startswith("[::]:"):
            address = "127.0.0.1:" + address.split(":")[-1]
        return original(server, address)

    loopback._distilserve_loopback = True  # type: ignore[attr-defined]
    replica.add_port_to_grpc_server = loopback
