"""A short, bounded load: `concurrency` threads send one good request after another until
`duration_s` passes or `max_requests` were sent, and record every latency and failure."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field


@dataclass
class LoadResult:
    latencies_s: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # "status 503" / exception name -> count

    @property
    def sent(self) -> int:
        return len(self.latencies_s) + sum(self.failures.values())


def run_load(send: Callable[[], int], duration_s: float, concurrency: int, max_requests: int) -> LoadResult:
    """`send()` makes one request and returns its HTTP status; 2xx counts as success."""
    result = LoadResult()
    lock = threading.Lock()
    deadline = time.monotonic() + duration_s
    budget = [max_requests]

    def worker() -> None:
        while time.monotonic() < deadline:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            t0 = time.perf_counter()
            try:
                status = send()
                key = None if 200 <= status < 300 else f"status {status}"
            except Exception as e:  # noqa: BLE001 - a timeout or reset is a failed request, counted
                key = type(e).__name__
            elapsed = time.perf_counter() - t0
            with lock:
                if key is None:
                    result.latencies_s.append(elapsed)
                else:
                    result.failures[key] = result.failures.get(key, 0) + 1

    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="check-load") as pool:
        for f in [pool.submit(worker) for _ in range(concurrency)]:
            f.result()
    return result
