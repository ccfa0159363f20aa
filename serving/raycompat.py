"""Every use of a Ray private API, in one place, each checked at start-up.

Ray gives no stability promise for these; an upgrade may rename or drop any of them. Each
one is wrapped here, and `check()` (run by every process that starts Ray or a replica, and
by the replica-gRPC hook) raises `RayCompatError` naming the symbol and the Ray version when
one is gone, instead of failing on the first request or, worse, quietly doing nothing.

| use                          | private symbol                                    | why no public API |
| Triton endpoint directory    | ray.experimental.internal_kv._internal_kv_*       | a named actor works but adds a process and a lifecycle owner; measured in BENCHMARKS.md |
| loopback-only replica gRPC   | ray.serve._private.replica.add_port_to_grpc_server | Serve binds "[::]:0" with no setting |
| loopback node, private dir   | ray.init(_node_ip_address=, _temp_dir=)           | no public arguments for either |
| non-blocking app delete      | serve.delete(name, _blocking=False)               | public delete waits for the replicas to stop |
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

KV_NAMESPACE = "distilserve"
KV_FUNCTIONS = ("_internal_kv_put", "_internal_kv_get", "_internal_kv_del", "_internal_kv_list",
                "_internal_kv_initialized")
REPLICA_MODULE = "ray.serve._private.replica"
REPLICA_GRPC_BIND = "add_port_to_grpc_server"
INIT_KWARGS = ("_node_ip_address", "_temp_dir")


class RayCompatError(RuntimeError):
    """A Ray private API distilserve relies on is missing from the installed Ray."""


def _ray_version() -> str:
    try:
        import ray

        return str(ray.__version__)
    except ImportError:
        return "not installed"


def _gone(symbol: str) -> RayCompatError:
    return RayCompatError(
        f"{symbol} is missing in Ray {_ray_version()} (distilserve was built against Ray 2.60); "
        "see serving/raycompat.py for what it is used for and pin a Ray that has it")


def _attr(module: str, name: str) -> object:
    try:
        mod = importlib.import_module(module)
    except ImportError:
        raise _gone(f"{module}") from None
    value = getattr(mod, name, None)
    if value is None:
        raise _gone(f"{module}.{name}")
    return value


# ---- the checks ------------------------------------------------------------------------------
def check_internal_kv() -> None:
    for name in KV_FUNCTIONS:
        _attr("ray.experimental.internal_kv", name)


def check_replica_grpc_bind() -> None:
    _attr(REPLICA_MODULE, REPLICA_GRPC_BIND)


def check_init_kwargs() -> None:
    import ray

    # ray.init takes these through **kwargs, so its signature does not show them; its source does.
    source = inspect.getsource(ray.init)
    for name in INIT_KWARGS:
        if f'kwargs.pop("{name}"' not in source:
            raise _gone(f"ray.init({name}=...)")


def check_serve_delete_nowait() -> None:
    from ray import serve

    if "_blocking" not in inspect.signature(serve.delete).parameters:
        raise _gone("ray.serve.delete(_blocking=...)")


CHECKS: dict[str, Callable[[], None]] = {
    "internal_kv": check_internal_kv,
    "replica_grpc_bind": check_replica_grpc_bind,
    "init_kwargs": check_init_kwargs,
    "serve_delete_nowait": check_serve_delete_nowait,
}


def check() -> None:
    """Every check above; raises RayCompatError for the first symbol that is gone."""
    for fn in CHECKS.values():
        fn()


# ---- internal key-value store (the Triton endpoint directory) --------------------------------
def kv_put(key: str, value: str) -> None:
    _attr("ray.experimental.internal_kv", "_internal_kv_put")(key, value, overwrite=True, namespace=KV_NAMESPACE)


def kv_delete(key: str) -> None:
    """Delete `key`; nothing to do when this process never connected to Ray (shutting down)."""
    if _attr("ray.experimental.internal_kv", "_internal_kv_initialized")():
        _attr("ray.experimental.internal_kv", "_internal_kv_del")(key, namespace=KV_NAMESPACE)


def kv_scan(prefix: str) -> list[bytes]:
    """The values of every key under `prefix` (entries deleted meanwhile are skipped)."""
    get = _attr("ray.experimental.internal_kv", "_internal_kv_get")
    keys = _attr("ray.experimental.internal_kv", "_internal_kv_list")(prefix, namespace=KV_NAMESPACE)
    return [raw for raw in (get(k, namespace=KV_NAMESPACE) for k in keys) if raw]


# ---- replica gRPC on loopback ----------------------------------------------------------------
def patch_replica_grpc_bind(rewrite: Callable[[str], str]) -> None:
    """Make Serve's replicas bind their gRPC server at `rewrite(address)`; idempotent."""
    original = _attr(REPLICA_MODULE, REPLICA_GRPC_BIND)
    replica = importlib.import_module(REPLICA_MODULE)
    if getattr(original, "_distilserve_patched", False):
        return

    def patched(server, address: str):  # noqa: ANN001, ANN202 - mirrors Ray's private signature
        return original(server, rewrite(address))

    patched._distilserve_patched = True  # type: ignore[attr-defined]
    setattr(replica, REPLICA_GRPC_BIND, patched)


# ---- ray.init and serve.delete private arguments -----------------------------------------------
def loopback_init_kwargs(temp_dir: str | None = None) -> dict[str, str]:
    """ray.init arguments that keep a local Ray on 127.0.0.1 (and in `temp_dir` if given)."""
    check_init_kwargs()
    kwargs = {"_node_ip_address": "127.0.0.1"}
    if temp_dir:
        kwargs["_temp_dir"] = temp_dir
    return kwargs


# Ray gives a new local node a fixed start-up deadline (its raylet must register within about 30 s);
# a busy 2-core host can miss it. Such a start is tried again, the failed try shut down first.
LOCAL_START_ATTEMPTS = 3
_START_TIMED_OUT = "timed out during startup"


def init_local(attempts: int = LOCAL_START_ATTEMPTS, **kwargs: Any) -> None:
    """`ray.init(**kwargs)` for a local Ray, again (up to `attempts` times) when the node missed
    Ray's start-up deadline; any other error, or the last try's, is raised."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(**kwargs)
            return
        except Exception as e:
            ray.shutdown()
            if attempt == attempts or _START_TIMED_OUT not in str(e):
                raise
            log.warning("local Ray did not start in time (try %d of %d: %s); trying again", attempt, attempts, e)


def delete_app_nowait(name: str) -> None:
    """serve.delete without waiting for the application's replicas to stop."""
    from ray import serve

    check_serve_delete_nowait()
    serve.delete(name, _blocking=False)
