"""The ingress's short path: straight to a replica's Triton, one hop instead of two.

Every ModelVersion replica owns a tritonserver on 127.0.0.1. The replica publishes that
server's gRPC address in Ray's cluster key-value store (through serving/raycompat.py) (refreshed with every passing health
check, withdrawn when the replica stops). An ingress on the same node reads them, and sends
inference straight to a Triton (least requests in flight first), so Triton's own dynamic
batcher sees the requests with no Ray hop in between. The Serve handle path stays:
- for replicas on other nodes (their Tritons listen on loopback only),
- while no endpoint is known yet, and for a request whose Triton turned out to be gone (the
  endpoint is then benched for `cooldown_s` and the request goes through Serve, which retries).

Autoscaling still sees the load: each replica reports its Triton's concurrency (see
`serving.autoscale_policy`), because requests on the short path never pass through Serve.

`EndpointPool` is pure (time is an argument); `publish`/`withdraw`/`read_all` do the I/O.
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass

from serving import raycompat

log = logging.getLogger("distilserve.endpoints")

KV_PREFIX = "distilserve/triton/"


@dataclass(frozen=True)
class Endpoint:
    app: str  # Ray Serve application, e.g. "sentiment-v1"
    replica: str  # the replica's unique id
    node: str  # Ray node id the Triton runs on
    grpc: str  # host:port of its gRPC listener
    ts: float  # when the replica last confirmed it (a passing health check)
    instances: int = 1  # model instances in that Triton: batches it executes at once


def kv_key(app: str, replica: str) -> str:
    return f"{KV_PREFIX}{app}/{replica}"


def publish(endpoint: Endpoint) -> None:
    value = json.dumps({"app": endpoint.app, "replica": endpoint.replica, "node": endpoint.node,
                        "grpc": endpoint.grpc, "ts": endpoint.ts, "instances": endpoint.instances})
    raycompat.kv_put(kv_key(endpoint.app, endpoint.replica), value)


def withdraw(app: str, replica: str) -> None:
    raycompat.kv_delete(kv_key(app, replica))


def parse(raw: bytes | str) -> Endpoint | None:
    try:
        d = json.loads(raw)
        instances = int(d.get("instances", 1))  # absent: published by a replica older than the field
        return Endpoint(str(d["app"]), str(d["replica"]), str(d["node"]), str(d["grpc"]), float(d["ts"]),
                        instances if instances >= 1 else 1)
    except (ValueError, KeyError, TypeError, AttributeError):  # AttributeError: not a JSON object
        return None


def read_all() -> list[Endpoint]:
    return [ep for ep in map(parse, raycompat.kv_scan(KV_PREFIX)) if ep is not None]


class EndpointPool:
    """The usable Tritons of one application, as seen by one ingress."""

    def __init__(self, node: str, *, max_age_s: float = 10.0, cooldown_s: float = 10.0) -> None:
        self.node = node
        self.max_age_s, self.cooldown_s = max_age_s, cooldown_s
        self._endpoints: tuple[Endpoint, ...] = ()
        self.total = 0  # fresh endpoints of the application on every node
        self._benched: dict[str, float] = {}  # grpc address -> benched until
        self.inflight: dict[str, int] = {}

    def update(self, endpoints: list[Endpoint], now: float) -> None:
        """Keep the fresh endpoints on this node; replace the set at once (read by another thread)."""
        fresh_anywhere = [e for e in endpoints if now - e.ts <= self.max_age_s]
        self._endpoints = tuple(sorted((e for e in fresh_anywhere if e.node == self.node), key=lambda e: e.grpc))
        self.total = len(fresh_anywhere)
        self._benched = {k: v for k, v in dict(self._benched).items() if v > now}

    @property
    def endpoints(self) -> tuple[Endpoint, ...]:
        return self._endpoints

    def parallel(self) -> int | None:
        """Batches the application's Tritons execute at once (model instances, summed), when every
        replica of it is on this node; None when some are elsewhere (then Serve spreads the rest)
        or none is known."""
        endpoints = self._endpoints
        if not endpoints or self.total != len(endpoints):
            return None
        return sum(e.instances for e in endpoints)

    def pick(self, now: float, rng: random.Random | None = None) -> Endpoint | None:
        """The endpoint with the fewest requests in flight (ties at random); None: use Serve.

        With replicas on other nodes too, only the local share of requests (local replicas /
        all replicas) takes the short path; the rest go through Serve, which spreads them over
        every replica, so remote replicas are not starved.
        """
        rng = rng or random
        usable = [e for e in self._endpoints if self._benched.get(e.grpc, 0.0) <= now]
        if not usable:
            return None
        if self.total > len(self._endpoints) and rng.random() >= len(self._endpoints) / self.total:
            return None
        least = min(self.inflight.get(e.grpc, 0) for e in usable)
        return rng.choice([e for e in usable if self.inflight.get(e.grpc, 0) == least])

    def acquire(self, endpoint: Endpoint) -> None:
        self.inflight[endpoint.grpc] = self.inflight.get(endpoint.grpc, 0) + 1

    def release(self, endpoint: Endpoint) -> None:
        self.inflight[endpoint.grpc] = max(0, self.inflight.get(endpoint.grpc, 0) - 1)

    def bench(self, endpoint: Endpoint, now: float) -> None:
        """A Triton that refused a connection is skipped until its replica proves healthy again."""
        self._benched[endpoint.grpc] = now + self.cooldown_s
        log.warning("Triton %s of %s unreachable; benched for %.0fs", endpoint.grpc, endpoint.app, self.cooldown_s)


class EndpointWatcher:
    """Polls the key-value store and keeps one EndpointPool per application up to date."""

    def __init__(self, node: str, poll_s: float = 0.5, **pool_kw: float) -> None:
        self.node, self.poll_s, self._pool_kw = node, poll_s, pool_kw
        self.pools: dict[str, EndpointPool] = {}
        self._stop = threading.Event()

    def start(self) -> None:
        """Poll on a daemon thread until stop()."""

        def run() -> None:
            while True:
                try:
                    self.poll_once()
                except Exception:  # noqa: BLE001 - keep polling; the Serve path works meanwhile
                    log.exception("reading Triton endpoints failed")
                if self._stop.wait(self.poll_s):
                    return

        threading.Thread(target=run, name="triton-endpoints", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def pool(self, app: str) -> EndpointPool:
        pool = self.pools.get(app)
        if pool is None:
            pool = self.pools[app] = EndpointPool(self.node, **self._pool_kw)
        return pool

    def apply(self, endpoints: list[Endpoint], now: float) -> None:
        by_app: dict[str, list[Endpoint]] = {}
        for e in endpoints:
            by_app.setdefault(e.app, []).append(e)
        for app in set(by_app) | set(self.pools):
            self.pool(app).update(by_app.get(app, []), now)

    def poll_once(self) -> None:
        self.apply(read_all(), time.time())
