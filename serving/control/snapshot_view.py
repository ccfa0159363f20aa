"""What an ingress replica knows of routing, from the controller's snapshot: no database.

The same interface as `serving.state.RegistryView` (`models`, `tables`, `versions`, `record()`,
`refresh()`, `close()`), fed differently: one background thread long-polls the controller
(`snapshot(since_revision)` returns as soon as routing changed, or after `wait_s`), another
hands recorded predictions to the controller in batches. Neither runs on the ingress's event
loop, and a slow or restarting controller only delays routing changes and prediction rows:
requests keep being routed by the last snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from serving.control.snapshot import LONG_POLL_S, Snapshot
from serving.traffic_table import TrafficTable

log = logging.getLogger("distilserve.ingress")

Fetch = Callable[[int, float], dict]  # (since_revision, wait_s) -> Snapshot mapping
Send = Callable[[list[list]], Any]  # prediction rows -> anything; raises when not delivered
Feedback = Callable[[str, str | None, int | None], dict]  # -> {} or {"error": kind, "message": ...}
MAX_PENDING = 100_000  # rows kept while the controller is unreachable; the oldest go first


class SnapshotView:
    def __init__(self, models: list[str], fetch: Fetch, send: Send, feedback: Feedback | None = None, *,
                 wait_s: float = LONG_POLL_S, flush_s: float = 0.25, start: bool = True) -> None:
        self.configured = list(models)
        self.fetch, self.send, self.feedback = fetch, send, feedback
        self.wait_s, self.flush_s = wait_s, flush_s
        self.snapshot = Snapshot(revision=0)
        self.tables: dict[str, TrafficTable] = {}
        self.versions: dict[str, set[str]] = {}
        self.label_names: dict[str, dict[str, list[str]]] = {}
        self._pending: list[list] = []
        self._lock = threading.Lock()
        self._apply_lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._poll, name="snapshot-poll", daemon=True),
                         threading.Thread(target=self._flush_loop, name="prediction-writer", daemon=True)]
        if start:
            for t in self._threads:
                t.start()

    @property
    def models(self) -> list[str]:
        """The models the controller serves; the configured ones until its first snapshot."""
        return list(self.snapshot.models) if self.snapshot.revision else self.configured

    @property
    def revision(self) -> int:
        return self.snapshot.revision

    def apply(self, data: dict) -> bool:
        """Take a snapshot mapping; False when it is not newer than the one held, or when it is a
        restarting controller's empty revision 0 (routing by the last snapshot goes on: applying
        it would answer 503 "no live version" until the controller's first publish)."""
        snap = Snapshot.model_validate(data)
        if snap.revision in (self.snapshot.revision, 0):
            return False
        tables = {
            m: TrafficTable(weights=t.weights, shadow_version=t.shadow_version, shadow_share=t.shadow_share,
                            salt=t.salt, revision=snap.revision)
            for m, t in snap.models.items() if t.weights
        }
        # Each attribute is replaced whole (never edited in place): readers on other threads see
        # the old or the new mapping, never half of one.
        self.versions = {m: set(t.versions) for m, t in snap.models.items()}
        self.label_names = {m: dict(t.labels) for m, t in snap.models.items()}
        self.tables = tables
        self.snapshot = snap
        return True

    def refresh(self) -> None:
        """Fetch now, without waiting for a change (after an admin command, say)."""
        data = self.fetch(-1, 0.0)
        with self._apply_lock:
            self.apply(data)

    def poll_once(self, wait_s: float) -> bool:
        """One long poll. Its answer is dropped when another fetch was applied while it waited:
        the refresh after an admin write may hold a newer snapshot than this one, and revisions
        only order the snapshots of one controller (a restarted one counts from 1 again)."""
        held = self.snapshot
        data = self.fetch(held.revision, wait_s)
        with self._apply_lock:
            return self.snapshot is held and self.apply(data)

    def labels(self, model: str, version: str) -> list[str] | None:
        """Class names in output order of a deployable version; None when the snapshot has none."""
        names = self.label_names.get(model, {}).get(version)
        return list(names) if names is not None else None

    def record_feedback(self, request_id: str, label: str | None, outcome: int | None) -> None:
        """Raises the registry's UnknownRequestError / RegistryError for a bad request, as the
        registry-backed view does."""
        from serving.registry.errors import RegistryError, UnknownRequestError

        if self.feedback is None:
            raise RegistryError("feedback is not accepted here: no controller to record it")
        self.flush()  # the prediction may still sit in this buffer
        answer = self.feedback(request_id, label, outcome)
        if answer.get("error") == "unknown_request":
            raise UnknownRequestError(answer["message"])
        if answer.get("error"):
            raise RegistryError(answer["message"])

    def record(self, request_id: str, model: str, version: str, label: str, user_id: str | None) -> None:
        with self._lock:
            self._pending.append([request_id, model, version, label, user_id, time.time()])

    def flush(self) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
        if not rows:
            return
        try:
            self.send(rows)
        except Exception:  # noqa: BLE001 - keep them for the next try rather than lose them
            log.warning("could not hand %d predictions to the controller; will retry", len(rows), exc_info=True)
            with self._lock:
                self._pending[:0] = rows
                dropped = len(self._pending) - MAX_PENDING
                if dropped > 0:
                    del self._pending[:dropped]
                    log.error("controller unreachable: dropped the %d oldest prediction rows", dropped)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once(self.wait_s)
            except Exception:  # noqa: BLE001 - the controller is restarting; route by the last snapshot
                log.warning("reading the traffic snapshot failed; retrying", exc_info=True)
                self._stop.wait(1.0)

    def _flush_loop(self) -> None:
        while not self._stop.wait(self.flush_s):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()


class ControllerAdmin:
    """`AdminControl`'s interface (serving/control/admin.py), answered by the controller: the
    admin API of an ingress replica that never writes the registry itself."""

    def __init__(self, call: Callable[..., Any], refresh: Callable[[], None]) -> None:
        self._call_remote, self._refresh = call, refresh

    async def _call(self, method: str, model: str, *args: Any, changes: bool = True) -> dict:
        from serving.dataplane import blocking
        from serving.errors import ApiError

        answer = await self._call_remote(method, model, *args)
        if "error" in answer:
            err = answer["error"]
            raise ApiError(err["status"], err["message"], err.get("headers") or {})
        if changes:
            await blocking(self._refresh)  # route by the new table at once, not at the next poll
        return answer["ok"]

    async def status(self, model: str) -> dict:
        return await self._call("status", model, changes=False)

    async def set_traffic(self, model: str, weights: dict[str, float], reason: str) -> dict:
        return await self._call("set_traffic", model, weights, reason)

    async def rollback(self, model: str, to_version: str | None, reason: str) -> dict:
        return await self._call("rollback", model, to_version, reason)

    async def deploy(self, model: str, version: str, warm: bool, reason: str) -> dict:
        return await self._call("deploy", model, version, warm, reason)

    async def prune(self, model: str, keep: int, dry_run: bool) -> dict:
        return await self._call("prune", model, keep, dry_run, changes=not dry_run)

    async def start_rollout(self, model: str, body: Any) -> dict:
        return await self._call("start_rollout", model, body.model_dump(mode="json", exclude_unset=True))

    async def rollout_command(self, model: str, command: str) -> dict:
        return await self._call("rollout_command", model, command)

    async def rollout_status(self, model: str) -> dict:
        return await self._call("rollout_status", model, changes=False)


class ControllerUiSource:
    """The operator page's `UiSource` (serving/ui/source.py), read by the controller."""

    def __init__(self, view: SnapshotView, read: Callable[[str], dict]) -> None:
        self._view, self._read = view, read

    def models(self) -> list[str]:
        return self._view.models

    def read(self, model: str) -> Any:
        from serving.ui.source import ModelReading

        return ModelReading.model_validate(self._read(model))


def controller_services(models: list[str], wait_s: float = LONG_POLL_S) -> tuple[SnapshotView, ControllerAdmin,
                                                                          ControllerUiSource]:
    """The ingress's view, admin control and operator-page source, all through the controller
    application's handle."""
    from ray import serve

    from distilserve.core.names import CONTROLLER_APP

    handle = serve.get_app_handle(CONTROLLER_APP)

    def fetch(since: int, wait: float) -> dict:
        return handle.snapshot.remote(since, wait).result(timeout_s=wait + 30)

    def send(rows: list[list]) -> Any:
        return handle.record_predictions.remote(rows).result(timeout_s=30)

    def feedback(request_id: str, label: str | None, outcome: int | None) -> dict:
        return handle.record_feedback.remote(request_id, label, outcome).result(timeout_s=30)

    async def call(method: str, model: str, *args: Any) -> dict:
        return await handle.admin.remote(method, model, *args)

    def ui_reading(model: str) -> dict:
        return handle.ui_reading.remote(model).result(timeout_s=30)

    view = SnapshotView(models, fetch, send, feedback, wait_s=wait_s)
    return view, ControllerAdmin(call, view.refresh), ControllerUiSource(view, ui_reading)
