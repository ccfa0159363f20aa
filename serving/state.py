"""What the ingress knows of the control state: traffic tables, versions, labels, and a
prediction log. The data plane sees only `TrafficView`; `RegistryView` is today's source.

A background thread rereads the registry every `poll_s` (the registry is the source of
truth: a rollback written by any process is live within one poll) and flushes recorded
predictions in batches, so no request waits on SQLite.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Protocol

from serving.control.rollout_doc import experiment_salt
from serving.registry import Registry
from serving.traffic_table import TrafficTable

log = logging.getLogger("distilserve.ingress")


class TrafficView(Protocol):
    """What the data plane reads and records; a controller's traffic snapshot can stand in for
    the registry behind it. `tables`, `versions` and `models` are kept current by
    the source's own thread."""

    models: list[str]
    tables: dict[str, TrafficTable]
    versions: dict[str, set[str]]

    def refresh(self) -> None: ...

    def labels(self, model: str, version: str) -> list[str] | None: ...

    def record(self, request_id: str, model: str, version: str, label: str, user_id: str | None) -> None: ...

    def record_feedback(self, request_id: str, label: str | None, outcome: int | None) -> None: ...

    def close(self) -> None: ...


class RegistryView:
    """TrafficView read from the registry (blocking calls; the data plane runs them in a thread)."""

    def __init__(self, registry_path: Path, models: list[str], poll_s: float = 0.25) -> None:
        self.registry = Registry(registry_path)
        self.models = list(models)
        self.poll_s = poll_s
        self.tables: dict[str, TrafficTable] = {}
        self.versions: dict[str, set[str]] = {}
        self._pending: list[tuple] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._publish_lock = threading.Lock()
        self._published: int | None = None  # the registry revision the tables were read at
        self.refresh()
        self._thread = threading.Thread(target=self._run, name="registry-view", daemon=True)
        self._thread.start()

    def refresh_if_changed(self) -> bool:
        """Reread only when the registry's revision moved since the last read (a cheap counter
        instead of parsing every version's card several times a second on a busy ingress)."""
        if self.registry.data_version() == self._published:
            return False
        return self.refresh()

    def refresh(self) -> bool:
        """Reread traffic, shadow and versions now (also after this process's own writes).

        Two threads refresh: the poller, and an admin call right after its own write. A read
        that started before the write may finish after the admin's refresh; publishing it
        would put the old table back until the next change (seen in CI: requests went to the
        rolled-out version after the switch). So each read notes the revision it started at,
        and an older read never replaces a newer one. False when this read was discarded.
        """
        revision = self.registry.data_version()  # before the reads: the data is at least this new
        tables: dict[str, TrafficTable] = {}
        versions: dict[str, set[str]] = {}
        for model in self.models:
            weights = self.registry.get_traffic(model)
            shadow = self.registry.get_shadow(model)
            versions[model] = {v.version for v in self.registry.list_versions(model) if v.status == "available"}
            if weights:
                tables[model] = TrafficTable(
                    weights=weights,
                    shadow_version=shadow.version if shadow else None,
                    shadow_share=shadow.share if shadow else 0.0,
                    salt=experiment_salt(self.registry, model) or model,
                )
        with self._publish_lock:
            if self._published is not None and revision < self._published:
                return False
            # Replaced whole, never edited in place: readers see the old or the new mapping.
            self.versions, self.tables, self._published = versions, tables, revision
        return True

    def labels(self, model: str, version: str) -> list[str] | None:
        """Class names in output order, from the version's card; None when not registered."""
        record = self.registry.get_version(model, version)
        return list(record.card.labels) if record is not None else None

    def record_feedback(self, request_id: str, label: str | None, outcome: int | None) -> None:
        """Raises the registry's UnknownRequestError / RegistryError for a bad request."""
        self.flush()  # the prediction may still sit in the buffer
        self.registry.record_feedback(request_id, label=label, outcome=outcome)

    def record(self, request_id: str, model: str, version: str, label: str, user_id: str | None) -> None:
        with self._lock:
            self._pending.append((request_id, model, version, label, user_id, time.time()))

    def flush(self) -> None:
        with self._lock:
            rows, self._pending = self._pending, []
        if rows:
            try:
                self.registry.record_predictions(rows)
            except Exception:  # noqa: BLE001 - keep them for the next try rather than lose them
                log.exception("could not record %d predictions; will retry", len(rows))
                with self._lock:
                    self._pending[:0] = rows

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self.refresh_if_changed()
            except Exception:  # noqa: BLE001 - a locked or busy registry must not kill the poller
                log.exception("registry refresh failed")
            self.flush()

    def close(self) -> None:
        self._stop.set()
        self.flush()
