"""The controller application on real Ray Serve and Triton: it deploys versions and runs rollouts
with no loop in this process, and a controller killed mid-canary is restarted by Serve and
finishes the rollout from the registry."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import psutil
import pytest

from serving.config import AutoscalingSettings, ServeConfig
from tests.helpers import delete_serve_apps, free_port, wait_for
from tests.integration.test_faults import Load

MODEL = "sentiment"


@pytest.fixture(scope="module")
def stack(ray_session, tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory, admin_token: str):
    from serving.stack import start_stack

    repo = tmp_path_factory.mktemp("controller-repo")
    shutil.copytree(tiny_repo / MODEL, repo / MODEL, symlinks=True)
    cfg = ServeConfig(
        port=free_port(), model_repository=repo, registry=tmp_path_factory.mktemp("controller-reg") / "registry.db",
        models=[MODEL], admin_token=admin_token, torch_threads=1, replica_cpus=0.1, rollout_tick_s=1.0,
        autoscaling=AutoscalingSettings(min_replicas=1, max_replicas=1),
    )
    start_stack(cfg, reconcile_s=0.5)  # the controller and the ingress; nothing else runs here
    url = f"http://127.0.0.1:{cfg.port}"
    wait_for(lambda: httpx.get(f"{url}/v2/models/{MODEL}/ready", timeout=5).status_code == 200, 300,
             "the controller to deploy version 1")
    from serving.registry import Registry

    yield {"url": url, "cfg": cfg, "reg": Registry(cfg.registry), "token": admin_token}
    delete_serve_apps()


def _controller_status() -> dict:
    from ray import serve

    from distilserve.core.names import CONTROLLER_APP

    return serve.get_app_handle(CONTROLLER_APP).status.remote().result(timeout_s=30)


def test_controller_leads_and_serves(stack) -> None:
    status = _controller_status()
    assert status["leader"] and status["revision"] >= 1 and status["last_error"] is None, status
    r = httpx.post(f"{stack['url']}/v1/predict", json={"model": MODEL, "inputs": ["I love this"]}, timeout=30)
    assert r.status_code == 200 and r.json()["version"] == "1", r.text
    assert stack["reg"].get_traffic(MODEL) == {"1": 100.0}
    # Admin reads and the operator page are answered by the controller (the ingress has no registry).
    auth = {"Authorization": f"Bearer {stack['token']}"}
    r = httpx.get(f"{stack['url']}/admin/models/{MODEL}", headers=auth, timeout=30)
    assert r.status_code == 200 and r.json()["traffic"] == {"1": 100.0}, r.text
    r = httpx.post(f"{stack['url']}/admin/models/{MODEL}/versions/prune", headers=auth, timeout=30,
                   json={"keep": 5, "dry_run": True})
    assert r.status_code == 200, r.text
    r = httpx.get(f"{stack['url']}/ui/api/state", headers=auth, timeout=30)
    assert r.status_code == 200 and MODEL in r.text, r.text[:500]


def test_only_the_controller_opens_the_registry(stack) -> None:
    registry = str(stack["cfg"].registry)
    opened = {name: [pid for pid in _replicas(name) if any(f.path.startswith(registry) for f in _files(pid))]
              for name in ("ingress:Ingress", "controller:Controller")}
    assert _replicas("ingress:Ingress") and opened["ingress:Ingress"] == [], opened
    assert opened["controller:Controller"], opened  # the check can see an open registry


def _replicas(name: str) -> list[int]:
    """Our Ray's replica processes of `app:deployment` (Ray titles them ray::ServeReplica:...)."""
    return [p.pid for p in psutil.Process().children(recursive=True)
            if f"ServeReplica:{name}" in " ".join(_cmdline(p))]


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except psutil.Error:
        return []


def _files(pid: int) -> list:
    try:
        return psutil.Process(pid).open_files()
    except psutil.Error:
        return []


def test_killed_controller_resumes_the_canary(stack) -> None:
    url, reg = stack["url"], stack["reg"]
    policy = {"strategy": "canary", "step_weights": [20, 60, 100], "step_interval_s": 3, "max_inconclusive": 10}
    gates = {"min_requests": 3, "min_labels": 1, "max_p99_ratio": 50.0, "max_accuracy_drop": None}
    with Load(url, threads=3) as load:
        r = httpx.post(f"{url}/admin/models/{MODEL}/rollouts", timeout=30,
                       headers={"Authorization": f"Bearer {stack['token']}"},
                       json={"version": "2", "policy": policy, "gate_overrides": gates})
        assert r.status_code == 200, r.text
        rollout_id = r.json()["rollout_id"]
        # Mid-canary: the candidate has traffic, the rollout is not done.
        wait_for(lambda: 0 < reg.get_traffic(MODEL).get("2", 0) < 100, 300, "the canary's first step")
        before = _controller_status()
        psutil.Process(before["pid"]).kill()
        wait_for(lambda: _restarted(before["pid"]), 120, "Serve to restart the controller")
        wait_for(lambda: reg.load_active_rollout(MODEL) is None, 300, "the canary to finish")
    finished = [e for e in reg.events(MODEL, rollout_id=rollout_id) if e.kind == "rollout.finished"]
    assert finished and finished[0].data["phase"] == "promoted", [e.message for e in finished]
    assert {v: w for v, w in reg.get_traffic(MODEL).items() if w > 0} == {"2": 100.0}
    # The new leader adopted the running version apps instead of deploying them again.
    deploys = [e for e in reg.events(MODEL, limit=500) if e.kind == "deployed" and e.data.get("version") == "2"]
    assert len(deploys) == 1, [e.message for e in deploys]
    codes = [code for _, _, code, _ in load.records]
    assert codes.count(200) > 0 and set(codes) <= {200, 503}, sorted(set(codes))


def _restarted(old_pid: int) -> bool:
    try:
        status = _controller_status()
    except Exception:  # noqa: BLE001 - the replica is down or starting: not yet
        return False
    return status["pid"] != old_pid and status["leader"]
