"""Environment for a loopback-only local Ray; set before `ray` is first imported.

Its own module so that whoever starts a local Ray (the runner, batch jobs, benchmarks, test
fixtures) can set it without importing the runner.
"""

from __future__ import annotations

import logging
import os
import sys

log = logging.getLogger(__name__)


def loopback_ray_env() -> None:
    """Ray settings that keep every listener on 127.0.0.1 and the CLI out of token auth.

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
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
