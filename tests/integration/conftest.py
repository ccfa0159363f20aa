"""Fixtures of the integration tier: a tiny real model repository, real Triton, real Ray."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from serving.ray_env import loopback_ray_env

# Before anything imports ray: keep every Ray listener on 127.0.0.1.
loopback_ray_env()

from tests.helpers import add_faulty_model, build_tiny_repo  # noqa: E402


@pytest.fixture(scope="session")
def tiny_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository with two quick versions of `sentiment` and the `faulty` model."""
    repo = tmp_path_factory.mktemp("repo")
    build_tiny_repo(repo, versions=2)
    add_faulty_model(repo)
    return repo


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for the session, in a private (short: socket paths) temp dir."""
    import ray

    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    from serving import raycompat
    from serving.raypatch import HOOK

    # Ray gives its node processes a fixed start-up deadline that a loaded 2-core machine can
    # miss; init_local tries again on that error only, so any other start-up failure shows at once.
    raycompat.init_local(address="local", namespace="distilserve-tests", include_dashboard=False,
                         log_to_driver=False, runtime_env={"worker_process_setup_hook": HOOK},
                         **raycompat.loopback_init_kwargs(temp_dir))
    yield
    from ray import serve

    try:
        serve.shutdown()
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def admin_token() -> str:
    return os.environ.setdefault("DISTILSERVE_TEST_ADMIN_TOKEN", "test-token-" + os.urandom(8).hex())


@pytest.fixture(scope="module", autouse=True)
def _fresh_serve_per_module():
    """After each module: no Serve application left, and no Serve proxy.

    Without a proxy (the ingress listens itself, the default) Serve stays up for the next module
    and only the applications go: starting and shutting Serve down again cost about 8 s a module
    on the idle 2-core machine. A Serve with a proxy is shut down: its HTTP port is fixed by its
    first start, and the next module's stack listens on a free port of its own."""
    yield
    import sys

    if "ray" not in sys.modules:
        return
    import ray

    if ray.is_initialized():
        from ray import serve

        from tests.helpers import delete_serve_apps

        try:
            if serve.status().proxies:
                serve.shutdown()
            else:
                delete_serve_apps()
        except Exception:  # noqa: BLE001 - no Serve running, or it is broken: start afresh
            try:
                serve.shutdown()
            except Exception:  # noqa: BLE001 - best effort between modules
                pass
