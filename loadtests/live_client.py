"""A live client beside a benchmark: one text at a time to the stack's /v1/predict, a pause between
answers, every request's latency kept. bench_batch runs one during a `--backend serving` job to show
what live requests pay while the job shares the replica's Triton.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass

from distilserve.core.stats import percentile


@dataclass(frozen=True)
class LiveSample:
    at_s: float  # when it was sent, seconds after start()
    latency_ms: float
    status: int  # 0: no answer (timeout, refused connection)


class LiveClient:
    """Sends one text, waits for the answer, pauses `pause_s`, repeats, until `stop()`."""

    def __init__(self, url: str, model: str, texts: list[str], pause_s: float = 0.05, timeout_s: float = 30.0) -> None:
        self.url, self.model, self.texts, self.pause_s, self.timeout_s = url, model, texts, pause_s, timeout_s
        self.samples: list[LiveSample] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="live-client", daemon=True)
        self._t0 = 0.0

    def start(self) -> LiveClient:
        self._t0 = time.perf_counter()
        self._thread.start()
        return self

    def stop(self) -> list[LiveSample]:
        self._stop.set()
        self._thread.join(self.timeout_s + 5)
        return self.samples

    def _run(self) -> None:
        import httpx

        rng = random.Random(7)
        with httpx.Client(timeout=self.timeout_s) as client:
            while not self._stop.is_set():
                sent = time.perf_counter()
                try:
                    status = client.post(self.url, json={"model": self.model, "inputs": [rng.choice(self.texts)]}).status_code
                except httpx.HTTPError:
                    status = 0
                self.samples.append(LiveSample(sent - self._t0, (time.perf_counter() - sent) * 1000, status))
                self._stop.wait(self.pause_s)


def live_summary(samples: list[LiveSample], first_s: float = 5.0) -> dict:
    """p50/p99 of the answered requests, over the whole run and over its first `first_s` seconds
    (where a job that yields only once it sees live traffic has not seen it yet); failures counted."""
    ok = [s for s in samples if s.status == 200]
    early = [s.latency_ms for s in ok if s.at_s < first_s]

    def p(values: list[float], q: float) -> float | None:
        return round(percentile(values, q), 1) if values else None

    lat = [s.latency_ms for s in ok]
    return {"live_requests": len(samples), "live_failed": len(samples) - len(ok),
            "live_p50_ms": p(lat, 50), "live_p99_ms": p(lat, 99),
            f"live_first_{first_s:g}s_p50_ms": p(early, 50), f"live_first_{first_s:g}s_p99_ms": p(early, 99)}
