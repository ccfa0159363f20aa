"""A local Ray's environment: loopback listeners, and lean background work that a user's value overrides."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from serving.ray_env import LEAN_LOCAL_RAY

PROBE = ("import json, os; from serving.ray_env import loopback_ray_env; loopback_ray_env(); "
         "print(json.dumps({k: os.environ.get(k) for k in %r}))")


def _env_after(preset: dict[str, str]) -> dict[str, str | None]:
    keys = [*LEAN_LOCAL_RAY, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"]
    env = {k: v for k, v in os.environ.items() if k not in keys} | preset
    out = subprocess.run([sys.executable, "-c", PROBE % keys], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def test_a_local_ray_gets_the_lean_defaults() -> None:
    got = _env_after({})
    assert got == {**LEAN_LOCAL_RAY, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    assert got["RAY_enable_metrics_collection"] == "0" and got["RAY_task_events_report_interval_ms"] == "10000"


def test_a_value_already_in_the_environment_wins() -> None:
    got = _env_after({"RAY_enable_metrics_collection": "1"})
    assert got["RAY_enable_metrics_collection"] == "1"
    assert got["RAY_task_events_report_interval_ms"] == LEAN_LOCAL_RAY["RAY_task_events_report_interval_ms"]
