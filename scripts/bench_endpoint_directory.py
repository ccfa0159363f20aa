"""Time the Triton endpoint directory two ways on a private local Ray: Ray's internal key-value
store (what serving/transport/endpoints.py uses, through serving/raycompat.py) and a named
detached actor (the public-API alternative). Prints one JSON line; run under the heavy lock:

    flock /tmp/ds-heavy.lock python scripts/bench_endpoint_directory.py
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time

from serving.ray_env import loopback_ray_env

loopback_ray_env()

import ray  # noqa: E402

from distilserve.core.stats import percentile  # noqa: E402
from serving import raycompat  # noqa: E402
from serving.transport import endpoints  # noqa: E402

ENDPOINTS, READS = 4, 300


@ray.remote(num_cpus=0)
class Directory:
    def __init__(self) -> None:
        self.entries: dict[str, str] = {}

    def publish(self, key: str, value: str) -> None:
        self.entries[key] = value

    def read_all(self) -> list[str]:
        return list(self.entries.values())


def timed(fn, n: int = READS) -> dict[str, float]:  # noqa: ANN001
    samples = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return {"p50_ms": round(percentile(samples, 50), 3), "p99_ms": round(percentile(samples, 99), 3)}


def main() -> None:
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")
    ray.init(address="local", include_dashboard=False, log_to_driver=False, **raycompat.loopback_init_kwargs(temp_dir))
    try:
        eps = [endpoints.Endpoint("m-v1", f"r{i}", "node", f"127.0.0.1:{9000 + i}", time.time())
               for i in range(ENDPOINTS)]
        for ep in eps:
            endpoints.publish(ep)
        t0 = time.perf_counter()
        directory = Directory.options(name="bench-directory", lifetime="detached").remote()
        ray.get(directory.read_all.remote())
        start_ms = (time.perf_counter() - t0) * 1000
        for ep in eps:
            ray.get(directory.publish.remote(endpoints.kv_key(ep.app, ep.replica), json.dumps(ep.__dict__)))
        kv = timed(endpoints.read_all)
        actor = timed(lambda: [endpoints.parse(r) for r in ray.get(directory.read_all.remote())])
        publish_kv = timed(lambda: endpoints.publish(eps[0]), 100)
        publish_actor = timed(lambda: ray.get(directory.publish.remote("k", "v")), 100)
        print(json.dumps({"ray": ray.__version__, "endpoints": ENDPOINTS, "reads": READS,
                          "internal_kv_read_all": kv, "named_actor_read_all": actor,
                          "internal_kv_publish": publish_kv, "named_actor_publish": publish_actor,
                          "named_actor_start_ms": round(start_ms, 1)}))
        ray.kill(directory)
    finally:
        ray.shutdown()
        shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
