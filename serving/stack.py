"""The whole stack from one process: start Ray, deploy the controller and the ingress, and (for
`distilserve serve`) stay in the foreground until Ctrl-C.

The top of `serving/`: it deploys the controller (serving/control/controller.py), which reconciles
version applications through serving/runner.py; nothing in serving/ imports this module.
"""

from __future__ import annotations

import shutil
import signal
import tempfile
import threading
import time

from serving import raycompat
from serving.config import ServeConfig
from serving.ray_env import loopback_ray_env
from serving.runner import start_serve


def start_ray(cfg: ServeConfig, temp_dir: str | None = None) -> None:
    if not cfg.ray_address:
        loopback_ray_env()
    import ray

    if cfg.ray_address:
        ray.init(address=cfg.ray_address, namespace="distilserve", log_to_driver=False)
    else:
        from serving.raypatch import HOOK

        raycompat.check()  # every Ray private API we use, before anything depends on one
        # address="local": always a new private instance, never a cluster someone else started.
        # Again when the node misses Ray's start-up deadline on a busy host (CI, 2026-12-02: the
        # second `distilserve up` of test_up_down failed so, under two test lanes).
        raycompat.init_local(address="local", namespace="distilserve", include_dashboard=False, log_to_driver=False,
                             runtime_env={"worker_process_setup_hook": HOOK}, **raycompat.loopback_init_kwargs(temp_dir))


def start_stack(cfg: ServeConfig, reconcile_s: float = 1.0, first_pass_timeout_s: float = 900.0) -> None:
    """Deploy the controller and the ingress on the Ray this process is connected to; the
    controller then registers, deploys and rolls out versions on its own.

    The ingress goes up after the controller's first pass (registration, initial traffic, the
    live versions deployed), so a ready ingress has versions to send requests to.
    """
    from ray import serve

    from distilserve.core.names import CONTROLLER_APP, INGRESS_APP
    from serving.control.controller import controller_app
    from serving.ingress import ingress_app

    start_serve(cfg)
    controller = serve.run(controller_app(cfg, reconcile_s), name=CONTROLLER_APP, route_prefix=None, blocking=False)
    deadline = time.monotonic() + first_pass_timeout_s
    while (status := controller.status.remote().result(timeout_s=60))["passes"] < 1:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the controller made no pass in {first_pass_timeout_s:.0f} s: {status} "
                               "(leader False: another controller holds the registry's lock)")
        time.sleep(0.5)
    serve.run(ingress_app(cfg, control_plane="controller"), name=INGRESS_APP, route_prefix="/", blocking=False)


def serve_forever(cfg: ServeConfig, reconcile_s: float = 1.0) -> None:
    """Run until SIGINT/SIGTERM, then shut Serve and Ray down (and with them every Triton).

    The process only owns Ray; the controller application does the controlling, so the same
    stack runs without this process on a cluster (`distilserve deploy`).
    """
    if not cfg.ray_address:
        loopback_ray_env()  # before the first `import ray`: Ray reads these at import time
    import ray
    from ray import serve

    stop = threading.Event()

    def _stop(*_: object) -> None:
        stop.set()

    def _handle_signals() -> None:
        # Explicit handlers: a process started from a background job or a script inherits SIGINT
        # as ignored, and Python then never raises KeyboardInterrupt; Ray's driver also installs
        # its own SIGTERM handler, so ours go in again after ray.init.
        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)

    _handle_signals()
    temp_dir = None if cfg.ray_address else tempfile.mkdtemp(prefix="dsray-")  # never /tmp/ray of others
    follower = None
    try:
        start_ray(cfg, temp_dir)
        _handle_signals()
        if temp_dir:  # the controller's log, as it is written (on a remote cluster it stays there)
            from serving.serve_logs import LogFollower, controller_logs

            follower = LogFollower(controller_logs(temp_dir), lambda line: print(line, flush=True)).start()
        if not stop.is_set():
            start_stack(cfg, reconcile_s)
            print(f"distilserve: serving {cfg.models} on http://{cfg.host}:{cfg.port}  (Ctrl-C stops)", flush=True)
        while not stop.wait(0.5):
            pass
    finally:
        print("distilserve: shutting down", flush=True)
        try:
            if ray.is_initialized():
                serve.shutdown()
        finally:
            if follower is not None:
                follower.stop()
            ray.shutdown()
            if temp_dir:
                shutil.rmtree(temp_dir, ignore_errors=True)
