"""POST rollout events to configured webhooks without ever blocking the controller loop.

`payload(event)` is pure (and Slack-compatible: it carries a `text`). `WebhookNotifier.notify`
only enqueues; one daemon thread posts with a short timeout. Failures are logged and dropped:
the registry's event log is the record, the webhook is a courtesy copy.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Any

import httpx

from serving.registry import EventRecord

log = logging.getLogger(__name__)


def payload(event: EventRecord) -> dict[str, Any]:
    """The JSON body POSTed for one event."""
    rollout = f" [{event.rollout_id}]" if event.rollout_id else ""
    return {
        "source": "distilserve",
        "text": f"{event.model}{rollout} {event.kind}: {event.message}",
        "event": event.model_dump(mode="json"),
    }


class WebhookNotifier:
    """Delivers events to `urls` in the background.

    Args:
        urls: webhook URLs; none makes `notify` a no-op.
        timeout_s: per-POST timeout.
        max_pending: events queued beyond this are dropped (logged) rather than piling up while
            a webhook is down.
    """

    def __init__(self, urls: Sequence[str], timeout_s: float = 2.0, max_pending: int = 1000) -> None:
        self.urls = list(urls)
        self.timeout_s = timeout_s
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(maxsize=max_pending)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.delivered = 0
        self.failed = 0

    def notify(self, event: EventRecord) -> None:
        """Queue `event` for every webhook; returns at once."""
        if not self.urls:
            return
        self._ensure_thread()
        try:
            self._queue.put_nowait(payload(event))
        except queue.Full:
            log.warning("webhook queue full: dropping event %s %s", event.kind, event.id)

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="rollout-webhooks", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while (body := self._queue.get()) is not None:
                for url in self.urls:
                    self._post(client, url, body)
                self._queue.task_done()
            self._queue.task_done()

    def _post(self, client: httpx.Client, url: str, body: dict[str, Any]) -> None:
        try:
            client.post(url, json=body).raise_for_status()
            self.delivered += 1
        except httpx.HTTPError as e:
            self.failed += 1
            log.warning("webhook %s failed for event %s: %s", url, body["event"]["kind"], e)

    def flush(self, timeout_s: float = 10.0) -> bool:
        """Wait until queued events were attempted (tests, shutdown); False if still busy."""
        if self._thread is None:
            return True
        done = threading.Event()

        def wait() -> None:
            self._queue.join()
            done.set()

        threading.Thread(target=wait, daemon=True).start()
        return done.wait(timeout_s)

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            try:
                self._queue.put(None, timeout=self.timeout_s)
            except queue.Full:
                return  # daemon thread: it dies with the process
            self._thread.join(self.timeout_s * (len(self.urls) + 1))
