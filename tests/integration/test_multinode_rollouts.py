"""Rollouts and faults on two Ray nodes with no driver and no CLI process alive (issue 14, item 7).

Runs loadtests/bench_multinode.py (the scenario is documented there) in a subprocess of its own
session and asserts what it recorded: node A (ingress, controller) and node B (every replica),
a PostgreSQL registry on loopback, the stack deployed from the generated Serve config, then only
HTTP: a canary the controller steps to 100 %, a broken candidate it rolls back, a controller
SIGKILLed mid-canary whose successor finishes the rollout, and node B's raylet SIGKILLed under
load and the node restarted. BENCH_ROLLBACK.md reports the benchmark's figures; this test checks
outcomes and counts only, no durations.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ray_nodes import RAY_CLI, REPO_ROOT, kill_group
from tests.services import postgres_bindir

TIMEOUT_S = 720  # about 3 min on the idle 2-core machine


@pytest.mark.skipif(not RAY_CLI.is_file(), reason=f"the `ray` CLI is not installed next to {sys.executable}")
@pytest.mark.skipif(postgres_bindir() is None, reason="no PostgreSQL server binaries (apt-get install postgresql)")
def test_rollouts_and_faults_on_two_nodes_with_nothing_of_ours_attached(tiny_repo: Path, tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    proc = subprocess.Popen(
        [sys.executable, "loadtests/bench_multinode.py", "--tiny-repo", str(tiny_repo), "--out", str(out),
         "--users", "3", "--settle", "5"],
        cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        log, _ = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the scenario's cleanup stops its nodes and PostgreSQL
        log, _ = proc.communicate(timeout=90)
    finally:
        kill_group(proc.pid)
    assert proc.returncode == 0 and out.is_file(), f"scenario failed (rc {proc.returncode}):\n{log[-8000:]}"
    r = json.loads(out.read_text())
    print(json.dumps({k: v for k, v in r.items() if k != "all"}, indent=2))  # shown with -s / -rA

    # Where things ran, and that nothing of ours stayed connected after the deploy.
    assert r["placement"] == {"ingress:Ingress": ["A"], "controller:Controller": ["A"],
                              "sentiment-v1:ModelVersion": ["B"]}, r["placement"]
    assert r["driver_connected_after_deploy"] is False

    canary = r["canary"]
    assert canary["phase"] == "promoted" and canary["traffic"] == {"2": 100.0}, canary
    assert set(canary["load"]["by_status"]) == {"200"} and canary["load"]["by_version"].get("2", 0) > 0, canary

    broken = r["broken"]
    assert broken["phase"] == "rolled_back" and "error rate" in broken["rollback_reason"], broken
    assert broken["traffic"] == {"2": 100.0}
    # The candidate's own failures (real 500s from the model), nothing else failed.
    assert set(broken["load"]["by_status"]) == {"200", "500"}, broken["load"]
    assert all("version 4 failed" in d for d in broken["load"]["failed_details"]), broken["load"]

    ctl = r["ctl_kill"]
    assert ctl["phase"] == "promoted" and ctl["traffic"] == {"3": 100.0}, ctl
    assert "rollout.set_traffic" in ctl["events"] and "rollout.promote" in ctl["events"], ctl["events"]
    # Killing the controller fails no request: routing goes on by the last snapshot.
    assert set(ctl["load"]["by_status"]) == {"200"}, ctl["load"]

    raylet = r["raylet"]
    # Requests in flight or sent while node B was gone fail only as a fast 503 (never a 500 or a
    # dropped connection); service returns once a replica runs on the restarted node, and stays.
    assert set(raylet["in_flight_failed_by_status"]) <= {"503"}, raylet
    assert set(raylet["failed_after_by_status"]) <= {"503"}, raylet
    assert raylet["service_back_s"] is not None, raylet
    assert raylet["settled"]["requests"] > 0 and set(raylet["settled"]["by_status"]) == {"200"}, raylet
    assert r["replica_nodes_end"]["A"] == 0 and r["replica_nodes_end"]["B"] >= 1, r["replica_nodes_end"]
    assert r["left_running"] == [], r["left_running"]
