"""serving/raycompat.py: each Ray private API we use is present in the installed Ray, each check
fails loudly (symbol and Ray version named) when its symbol is gone, and each wrapper works."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import pytest

from serving import raycompat
from serving.raypatch import bind_replica_grpc_to_loopback, loopback_address
from tests.helpers import REPO_ROOT


def test_every_check_passes_on_the_pinned_ray() -> None:
    raycompat.check()


def _drop(monkeypatch: pytest.MonkeyPatch, module: str, name: str) -> None:
    monkeypatch.delattr(importlib.import_module(module), name)


@pytest.mark.parametrize("name", raycompat.KV_FUNCTIONS)
def test_internal_kv_check_names_the_missing_symbol(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    _drop(monkeypatch, "ray.experimental.internal_kv", name)
    with pytest.raises(raycompat.RayCompatError, match=rf"internal_kv\.{name} is missing in Ray 2\."):
        raycompat.check()


def test_replica_grpc_check_names_the_missing_symbol(monkeypatch: pytest.MonkeyPatch) -> None:
    _drop(monkeypatch, raycompat.REPLICA_MODULE, raycompat.REPLICA_GRPC_BIND)
    with pytest.raises(raycompat.RayCompatError, match="add_port_to_grpc_server is missing in Ray"):
        raycompat.check()
    # The worker hook fails too (a worker that cannot keep replica gRPC on loopback must not start).
    with pytest.raises(raycompat.RayCompatError):
        bind_replica_grpc_to_loopback()


@pytest.mark.parametrize("name", raycompat.INIT_KWARGS)
def test_init_kwargs_check_names_the_missing_argument(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    real = inspect.getsource

    def without(obj: object) -> str:
        return real(obj).replace(f'kwargs.pop("{name}"', 'kwargs.pop("_renamed"')

    monkeypatch.setattr(raycompat.inspect, "getsource", without)
    with pytest.raises(raycompat.RayCompatError, match=rf"ray.init\({name}=...\) is missing"):
        raycompat.loopback_init_kwargs("/tmp/x")


def test_serve_delete_check_names_the_missing_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray import serve

    monkeypatch.setattr(serve, "delete", lambda name: None)
    with pytest.raises(raycompat.RayCompatError, match=r"serve.delete\(_blocking=...\) is missing"):
        raycompat.delete_app_nowait("m-v1")


def test_loopback_init_kwargs() -> None:
    assert raycompat.loopback_init_kwargs() == {"_node_ip_address": "127.0.0.1"}
    assert raycompat.loopback_init_kwargs("/tmp/rt") == {"_node_ip_address": "127.0.0.1", "_temp_dir": "/tmp/rt"}


def test_delete_app_nowait_passes_blocking_false(monkeypatch: pytest.MonkeyPatch) -> None:
    from ray import serve

    calls = []
    monkeypatch.setattr(serve, "delete", lambda name, _blocking=True: calls.append((name, _blocking)))
    raycompat.delete_app_nowait("m-v1")
    assert calls == [("m-v1", False)]


@pytest.mark.parametrize(("given", "bound"), [("[::]:1234", "127.0.0.1:1234"), ("10.0.0.5:99", "10.0.0.5:99"),
                                              ("127.0.0.1:7", "127.0.0.1:7")], ids=["any", "explicit", "loopback"])
def test_replica_grpc_hook_binds_loopback(monkeypatch: pytest.MonkeyPatch, given: str, bound: str) -> None:
    replica = importlib.import_module(raycompat.REPLICA_MODULE)
    seen = []
    monkeypatch.setattr(replica, raycompat.REPLICA_GRPC_BIND, lambda server, address: seen.append(address))
    bind_replica_grpc_to_loopback()
    bind_replica_grpc_to_loopback()  # idempotent: not wrapped twice
    getattr(replica, raycompat.REPLICA_GRPC_BIND)(object(), given)
    assert seen == [bound] and loopback_address(given) == bound


def test_internal_kv_wrappers_round_trip(monkeypatch: pytest.MonkeyPatch) -> None:
    kv = importlib.import_module("ray.experimental.internal_kv")
    store: dict[tuple[str, str], str] = {}
    monkeypatch.setattr(kv, "_internal_kv_put",
                        lambda k, v, overwrite, namespace: store.__setitem__((namespace, k), v))
    monkeypatch.setattr(kv, "_internal_kv_get", lambda k, namespace: store.get((namespace, k)))
    monkeypatch.setattr(kv, "_internal_kv_list",
                        lambda prefix, namespace: [k for ns, k in store if ns == namespace and k.startswith(prefix)])
    monkeypatch.setattr(kv, "_internal_kv_del", lambda k, namespace: store.pop((namespace, k)))
    monkeypatch.setattr(kv, "_internal_kv_initialized", lambda: True)
    raycompat.kv_put("p/a", "1")
    raycompat.kv_put("p/b", "2")
    raycompat.kv_put("q/c", "3")
    assert sorted(raycompat.kv_scan("p/")) == ["1", "2"]
    raycompat.kv_delete("p/a")
    assert raycompat.kv_scan("p/") == ["2"]
    monkeypatch.setattr(kv, "_internal_kv_initialized", lambda: False)
    raycompat.kv_delete("p/b")  # not connected to Ray: nothing to delete, no error
    assert raycompat.kv_scan("p/") == ["2"]


PRIVATE = re.compile(r"_internal_kv_|\._private\b|(?<!\w)(_node_ip_address|_temp_dir|_blocking)\b")
# Test-only private uses that simulate a second node (no public API starts one in-process).
ALLOWED = {Path("serving/raycompat.py"), Path("tests/integration/test_multinode.py"), Path("tests/ray_nodes.py"),
           Path("loadtests/bench_multinode.py"), Path("tests/unit/test_raycompat.py")}


def test_no_ray_private_api_outside_the_compat_module() -> None:
    offenders = []
    for path in REPO_ROOT.rglob("*.py"):
        rel = path.relative_to(REPO_ROOT)
        if rel.parts[0] in (".venv", "node_modules", "build") or rel in ALLOWED:
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            code = line.split("#", 1)[0]
            if PRIVATE.search(code):
                offenders.append(f"{rel}:{i}: {line.strip()}")
    assert not offenders, "Ray private APIs belong in serving/raycompat.py:\n" + "\n".join(offenders)


def test_the_private_api_scan_catches_each_form() -> None:
    for line in ('ray.init(_node_ip_address="127.0.0.1")', "serve.delete(a, _blocking=False)",
                 "from ray.serve._private import replica", "_internal_kv_get(k)", 'kw["_temp_dir"] = d'):
        assert PRIVATE.search(line), line
    assert not PRIVATE.search("run_job(spec, ray_temp_dir=d)")


TIMED_OUT = Exception("The current node timed out during startup. This could happen because some of the raylet "
                      "failed to startup or the GCS has become overloaded.")


@pytest.mark.parametrize(
    ("outcomes", "inits", "raised"),
    [
        ([None], 1, None),
        ([TIMED_OUT, None], 2, None),  # missed the deadline once: started on the second try
        ([TIMED_OUT, TIMED_OUT, None], 3, None),
        ([TIMED_OUT, TIMED_OUT, TIMED_OUT], 3, "timed out during startup"),  # the third failure is raised
        ([ValueError("bad argument"), None], 1, "bad argument"),  # anything else: raised at once
    ],
)
def test_init_local_tries_again_only_when_the_node_missed_its_deadline(
        monkeypatch: pytest.MonkeyPatch, outcomes: list, inits: int, raised: str | None) -> None:
    import sys
    import types

    calls: list[str] = []
    script = iter(outcomes)

    def init(**kwargs: object) -> None:
        calls.append("init")
        outcome = next(script)
        if outcome is not None:
            raise outcome

    fake = types.SimpleNamespace(init=init, shutdown=lambda: calls.append("shutdown"))
    monkeypatch.setitem(sys.modules, "ray", fake)
    if raised:
        with pytest.raises(Exception, match=raised):
            raycompat.init_local(address="local")
    else:
        raycompat.init_local(address="local")
    assert calls.count("init") == inits
    # Every failed try is shut down before the next (or before the error goes up).
    assert calls.count("shutdown") == inits - (0 if raised else 1)
