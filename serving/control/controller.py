"""The control plane as a Ray Serve application: one `Controller` replica in the app `controller`.

It owns everything that changes what is deployed or where traffic goes: registering the
repository's versions, reconcile (deploy / remove one Serve application per version that is
live, shadowed, warm or the rollback target), rollout ticks (`RolloutController`), pruning,
warm windows and webhooks. It publishes the traffic snapshot the ingress routes by
(`snapshot(since_revision)`, a long poll) and writes the predictions ingress replicas hand it.

Why a Serve application rather than a detached actor: it deploys the same way from
`distilserve up` (serve.run) and from a Serve config / KubeRay's `serveConfigV2`
(`import_path: serving.applications:build_controller`), and Serve restarts its replica when the
process dies. Ray Serve lets a replica deploy other applications (`serve.run` reaches Serve's
controller actor by name from any worker); an application deployed that way is "imperative", so
a later `serve deploy` of the config, which deletes only declarative applications it does not
name, leaves the version applications alone.

One leader: the deployment has exactly one replica, and the loop first takes an exclusive lock
on the registry (`LeaderLock`: a file lock, or a PostgreSQL advisory lock, both dropped when the
process dies), so a replacement replica that starts while the old one still stops, or the new
cluster of an upgrade while the old one still runs, stands by instead of acting twice: it
publishes snapshots read from the registry (its ingress routes) but deploys, ticks and prunes
nothing until it holds the lock.
All rollout state lives in the registry; a new leader adopts the running version applications
and resumes every rollout where the registry says it stands.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from ray import serve

from serving.config import ServeConfig
from serving.control.snapshot import LONG_POLL_S, ModelReads, Snapshot, next_snapshot

log = logging.getLogger("distilserve.controller")

CONTROLLER_DEPLOYMENT = "Controller"
ADMIN_METHODS = ("status", "set_traffic", "rollback", "deploy", "prune", "start_rollout", "rollout_command",
                 "rollout_status")


class LeaderLock:
    """One acting controller per registry, held for as long as the leader's process lives.

    A SQLite registry: an exclusive `flock` on `<file>.leader` (the kernel drops it when the
    process dies). A PostgreSQL registry: a session advisory lock on a connection of its own
    (the server drops it when that connection goes, with the process or the node).
    """

    PG_KEY = 0x64736374726C  # "dsctrl": the advisory lock id of the distilserve controller

    def __init__(self, registry: Path | str) -> None:
        from serving.registry.db import engine_url

        self.url = engine_url(registry)
        self.path = Path(f"{self.url.database}.leader") if self.url.drivername == "sqlite" else None
        self._fd: int | None = None
        self._conn: Any = None

    def try_acquire(self) -> bool:
        if self._fd is not None or self._conn is not None:
            return True
        return self._flock() if self.path is not None else self._advisory()

    def _flock(self) -> bool:
        assert self.path is not None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def _advisory(self) -> bool:
        import sqlalchemy as sa

        engine = sa.create_engine(self.url, poolclass=sa.pool.NullPool)
        conn = engine.connect()
        if conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": self.PG_KEY}).scalar():
            conn.commit()
            self._conn = conn
            return True
        conn.close()
        engine.dispose()
        return False

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the lock
            self._fd = None
        if self._conn is not None:
            self._conn.close()  # the session ends: PostgreSQL drops its advisory locks
            self._conn = None

    def __str__(self) -> str:
        return str(self.path) if self.path else f"advisory lock {self.PG_KEY} on {self.url.render_as_string()}"


def read_models(registry: Any, models: list[str]) -> dict[str, ModelReads]:
    """The registry reads the snapshot is built from. A failed read raises: the last published
    snapshot then stays in force (dropping the model would make the ingress 404 it)."""
    from serving.control.rollout_doc import experiment_salt

    out = {}
    for model in models:
        shadow = registry.get_shadow(model)
        out[model] = ModelReads(
            weights=registry.get_traffic(model),
            shadow_version=shadow.version if shadow else None,
            shadow_share=shadow.share if shadow else 0.0,
            experiment_salt=experiment_salt(registry, model),
            versions={v.version: list(v.card.labels) for v in registry.list_versions(model) if v.status == "available"},
        )
    return out


class ControlLoop:
    """The leader's loop, on its own thread: reconcile, publish, write predictions, tick rollouts.

    The loop opens its own registry connection once it leads. Callers read `snapshot`, hand rows
    to `add_predictions` (a buffer every pass empties), and may `publish` / `flush` at once from
    their own thread with their own connection (after an admin change, before feedback).
    """

    def __init__(self, cfg: ServeConfig, reconcile_s: float = 1.0) -> None:
        self.cfg = cfg
        self.reconcile_s = reconcile_s
        self.snapshot: Snapshot = Snapshot(revision=0)
        self._first_revision = int(time.time() * 1000)  # see next_snapshot
        self.leader = False
        self.passes = 0
        self.last_error: str | None = None
        self.on_publish: list[Any] = []  # callables run (on this thread) after a new revision
        self.models: Any = lambda: list(cfg.models)  # the runner's discovery once leading
        self._pending: list[tuple] = []
        self._lock = threading.Lock()
        self._publish_lock = threading.Lock()
        self._stop = threading.Event()
        self._leader_lock = LeaderLock(cfg.registry)
        self._thread = threading.Thread(target=self._run, name="distilserve-controller", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def alive(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout_s)
        self._leader_lock.release()

    def add_predictions(self, rows: list[tuple]) -> None:
        with self._lock:
            self._pending.extend(tuple(r) for r in rows)

    def _run(self) -> None:
        if not self._leader_lock.try_acquire():
            log.info("another controller holds %s; standing by (routing from the registry) until it goes",
                     self._leader_lock)
            if not self._stand_by():
                return
        self.leader = True
        from serving.control.rollouts import RolloutController
        from serving.runner import Runner

        runner = Runner(self.cfg, discover=True)
        runner.adopt_deployed()
        runner.prepare()
        rollouts = RolloutController.for_config(self.cfg, runner.registry)
        self.models = runner.models
        log.info("controller leading: models %s, deployed %s", runner.models(), runner.deployed)
        next_tick = 0.0
        while not self._stop.is_set():
            # Publish before reconcile: a deploy blocks for a Triton start, routing must not wait.
            for step in (lambda: self._publish(runner.registry), runner.reconcile,
                         lambda: self._publish(runner.registry), lambda: self._flush(runner.registry)):
                try:
                    step()
                except Exception as e:  # noqa: BLE001 - keep controlling; the next pass retries
                    self.last_error = repr(e)
                    log.exception("controller pass failed")
            if time.monotonic() >= next_tick:
                rollouts.models = self.models()  # models added to the repository roll out too
                rollouts.tick()  # one decide() per active rollout; failures are logged per model
                next_tick = time.monotonic() + self.cfg.rollout_tick_s
            self.passes += 1
            self._stop.wait(self.reconcile_s)
        self._flush(runner.registry)

    def _stand_by(self) -> bool:
        """While another controller leads (the old cluster of a NewCluster upgrade shares the
        registry): publish read-only snapshots and write the predictions handed over, so this
        cluster's ingress routes from the first second instead of answering 503 until the old
        cluster is gone; deploy nothing, tick no rollout, prune nothing. True once this one
        leads, False when stopped first."""
        from serving.registry import Registry
        from serving.runner import served_models

        registry = Registry(self.cfg.registry)
        self.models = lambda: served_models(self.cfg)
        try:
            while not self._stop.is_set():
                for step in (lambda: self._publish(registry), lambda: self._flush(registry)):
                    try:
                        step()
                    except Exception as e:  # noqa: BLE001 - keep standing by; the next pass retries
                        self.last_error = repr(e)
                        log.exception("standby pass failed")
                self.passes += 1
                if self._leader_lock.try_acquire():
                    return True
                self._stop.wait(self.reconcile_s)
            return False
        finally:
            self._flush(registry)
            registry.close()

    def _publish(self, registry: Any) -> None:
        """Read the registry and publish a new revision if routing changed (any thread)."""
        with self._publish_lock:
            new = next_snapshot(self.snapshot, read_models(registry, self.models()), self._first_revision)
            if new is not self.snapshot:
                self.snapshot = new
                for callback in self.on_publish:
                    callback()

    publish = _publish

    def flush(self, registry: Any) -> None:
        """Write the buffered predictions now (before feedback that may refer to them)."""
        self._flush(registry)

    def _flush(self, registry: Any) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
        if rows:
            try:
                registry.record_predictions(rows)
            except Exception:  # noqa: BLE001 - keep them for the next pass rather than lose them
                log.exception("could not record %d predictions; will retry", len(rows))
                with self._lock:
                    self._pending[:0] = rows


# Stopping: Serve waits until no call is open (checked every wait loop; default 2 s), then runs
# __del__, which stops the loop and gives up the lead. Open calls are mostly snapshot long polls
# (at most LONG_POLL_S); admin calls are short. 0.25 s keeps a stop at about LONG_POLL_S.
@serve.deployment(name=CONTROLLER_DEPLOYMENT, num_replicas=1, max_ongoing_requests=1000,
                  health_check_period_s=5.0, graceful_shutdown_wait_loop_s=0.25,
                  ray_actor_options={"num_cpus": 0})
class Controller:
    """The Serve replica around `ControlLoop`; its methods are what ingress replicas and the
    CLI call through a DeploymentHandle."""

    def __init__(self, config: dict, reconcile_s: float = 1.0) -> None:
        from serving.registry import Registry
        from serving.serve_logs import log_into_serve

        log_into_serve()  # leading, standing by, failed passes: into this replica's log file
        self.cfg = ServeConfig.model_validate(config)
        self.loop = ControlLoop(self.cfg, reconcile_s)
        # The API's own connection (thread-safe); the loop opens another once it leads.
        self.registry = Registry(self.cfg.registry)
        host = "127.0.0.1" if self.cfg.host in ("0.0.0.0", "::", "") else self.cfg.host
        self.ingress_url = f"http://{host}:{self.cfg.port}"
        self._changed: asyncio.Event | None = None
        self._event_loop: asyncio.AbstractEventLoop | None = None
        self.loop.on_publish.append(self._wake)
        self.loop.start()

    def _wake(self) -> None:
        if self._event_loop is not None and self._changed is not None:
            self._event_loop.call_soon_threadsafe(self._changed.set)

    async def snapshot(self, since_revision: int = -1, timeout_s: float = LONG_POLL_S) -> dict:
        """The current snapshot as soon as its revision differs from `since_revision`, or after
        `timeout_s` (then possibly the same revision: the caller simply asks again). A controller
        that has published nothing yet (just restarted) waits for its first publish rather than
        answer with an empty snapshot."""
        if self._changed is None:
            self._event_loop, self._changed = asyncio.get_running_loop(), asyncio.Event()
        deadline = time.monotonic() + max(0.0, min(timeout_s, 60.0))
        while True:
            self._changed.clear()  # before the check: a publish after it sets the event again
            if self.loop.snapshot.revision not in (since_revision, 0):
                break
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                await asyncio.wait_for(self._changed.wait(), timeout=left)
            except TimeoutError:
                pass
        return self.loop.snapshot.model_dump(mode="json")

    async def record_predictions(self, rows: list[list]) -> int:
        """Buffer prediction rows (request_id, model, version, label, user_id, ts); the loop
        writes them in one transaction per pass."""
        self.loop.add_predictions([tuple(r) for r in rows])
        return len(rows)

    async def record_feedback(self, request_id: str, label: str | None, outcome: int | None) -> dict:
        """Ground truth or an outcome for a recorded prediction: {} or {"error": kind, "message"}."""
        from serving.registry import RegistryError, UnknownRequestError

        def write() -> None:
            self.loop.flush(self.registry)  # the prediction may still sit in this buffer
            self.registry.record_feedback(request_id, label=label, outcome=outcome)

        try:
            await asyncio.to_thread(write)
        except UnknownRequestError as e:
            return {"error": "unknown_request", "message": str(e)}
        except RegistryError as e:
            return {"error": "registry", "message": str(e)}
        return {}

    async def admin(self, method: str, model: str, *args: Any) -> dict:
        """One `AdminControl` call (the admin API's traffic, deploy, rollback and rollouts),
        answered here so that ingress replicas never write the registry:
        {"ok": result} or {"error": {"status", "message", "headers"}}."""
        from serving.control.admin import AdminControl
        from serving.control.rollout_start import StartRequest
        from serving.errors import ApiError

        if method not in ADMIN_METHODS:
            return {"error": {"status": 404, "message": f"no admin method {method!r}", "headers": {}}}
        text = await self._ingress_metrics() if method.startswith("rollout") else b""
        control = AdminControl(self.registry, self.loop.models(), lambda: self.loop.publish(self.registry),
                               lambda: text, self._version_ready, self.cfg.webhooks)
        if method == "start_rollout":
            args = (StartRequest.model_validate(args[0]),)
        try:
            return {"ok": await getattr(control, method)(model, *args)}
        except ApiError as e:
            return {"error": {"status": e.status, "message": e.message, "headers": e.headers}}

    async def ui_reading(self, model: str) -> dict:
        """What the operator page shows of one model (serving/ui/source.py's ModelReading)."""
        from serving.ui.source import RegistrySource

        source = RegistrySource(self.registry, self.loop.models())
        return await asyncio.to_thread(lambda: source.read(model).model_dump(mode="json"))

    async def _ingress_metrics(self) -> bytes:
        """The ingress's Prometheus text (what rollout status and commands judge by); b"" when
        unreachable, which the metrics source reads as "no data"."""
        import httpx

        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                return (await client.get(f"{self.ingress_url}/metrics")).content
        except httpx.HTTPError:
            return b""

    async def _version_ready(self, model: str, version: str) -> bool:
        import httpx

        try:
            async with httpx.AsyncClient(timeout=5.0) as client:
                r = await client.get(f"{self.ingress_url}/v2/models/{model}/versions/{version}/ready")
            return r.status_code == 200
        except httpx.HTTPError:
            return False

    async def status(self) -> dict:
        return {"leader": self.loop.leader, "passes": self.loop.passes, "pid": os.getpid(),
                "revision": self.loop.snapshot.revision, "last_error": self.loop.last_error}

    def check_health(self) -> None:
        if not self.loop.alive():
            raise RuntimeError("the controller loop has stopped")

    def __del__(self) -> None:
        self.loop.stop()


def controller_app(cfg: ServeConfig, reconcile_s: float = 1.0, resources: dict[str, float] | None = None):  # noqa: ANN201 - a Ray Serve Application
    """The controller application; `resources` pins it (e.g. to the registry's node)."""
    from serving.registry.db import is_url

    resolved = cfg.model_copy(
        update={"registry": cfg.registry if is_url(cfg.registry) else Path(cfg.registry).resolve(),
                "model_repository": Path(cfg.model_repository).resolve()}
    )
    options: dict[str, Any] = {"num_cpus": 0}
    if resources:
        options["resources"] = resources
    return Controller.options(ray_actor_options=options).bind(
        resolved.model_dump(mode="json", exclude={"admin_token"}), reconcile_s)
