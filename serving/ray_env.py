"""Environment for a loopback-only local Ray; set before `ray` is first imported.

Its own module so that whoever starts a local Ray (the runner, batch jobs, benchmarks, test
fixtures) can set it without importing the runner.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)

# A local Ray's background work, trimmed: on a 2-core machine an idle stack's Ray and Serve processes
# took 0.18 of a core, and every bit of it comes out of the model's share (BENCHMARKS.md, "The
# stack's idle tax"). Nothing in a local stack reads what these settings thin out: Ray's metrics
# agent (no dashboard, no Prometheus scraping a local Ray; distilserve's own /metrics is its own) and
# task events (they feed the dashboard's state API). Each is only a default: a value already in the
# environment wins. Clusters (`ray_address`) never get these. Not here: a slower Serve controller
# loop (RAY_SERVE_CONTROL_LOOP_INTERVAL_S=0.5 saved another 0.03 of a core, but made every deploy
# slower: two deploying integration tests took 11% longer).
LEAN_LOCAL_RAY = {
    "RAY_enable_metrics_collection": "0",
    "RAY_task_events_report_interval_ms": "10000",
}


def loopback_ray_env() -> None:
    """Ray settings that keep every listener on 127.0.0.1 and the CLI out of token auth, and the
    background work of a local Ray lean (`LEAN_LOCAL_RAY`).

    Must run before `ray` is first imported: Ray reads these at import time. With
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 Ray runs as a single-node cluster, takes 127.0.0.1 as
    the node address, and binds GCS, raylet and worker servers there instead of on every
    interface. Multi-node deployments connect with `ray_address` and never call this.
    """
    if "ray" in sys.modules and "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ:
        log.warning("ray was imported before loopback_ray_env(): Ray may bind non-loopback addresses")
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_SERVE_DEFAULT_HTTP_HOST", "127.0.0.1")
    for key, value in LEAN_LOCAL_RAY.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
