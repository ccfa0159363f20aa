"""Faults with real processes: a Triton killed under load, a model that raises, corrupt or
pickle-only weights, a Ray replica killed. The live version keeps serving through all of them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest

from serving.config import AutoscalingSettings, ServeConfig
from tests.helpers import delete_serve_apps, free_port, wait_for

RECOVERY_S = 15.0  # the bound: detected and recovered within 15 s
REPLACE_S = 240.0  # a generous bound for a new replica to start its own Triton on a busy machine


def _spoil_versions(repo: Path) -> None:
    """sentiment/3: truncated safetensors; sentiment/4: weights only as a pickle (pytorch_model.bin)."""
    src = repo / "sentiment" / "2"
    for version in ("3", "4"):
        dst = repo / "sentiment" / version
        shutil.copytree(src, dst, symlinks=True)
        card = json.loads((dst / "card.json").read_text())
        card["version"] = version
        (dst / "card.json").write_text(json.dumps(card))
    weights = repo / "sentiment" / "3" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    (repo / "sentiment" / "4" / "model.safetensors").unlink()
    (repo / "sentiment" / "4" / "pytorch_model.bin").write_bytes(b"\x80\x04not really a pickle.")


@pytest.fixture(scope="module")
def fault_repo(tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = tmp_path_factory.mktemp("fault-repo")
    shutil.copytree(tiny_repo, repo, symlinks=True, dirs_exist_ok=True)  # never spoil the shared one
    _spoil_versions(repo)
    return repo


@pytest.fixture(scope="module")
def stack(ray_session, fault_repo: Path, tmp_path_factory: pytest.TempPathFactory, admin_token: str):
    from serving.runner import Runner

    cfg = ServeConfig(
        port=free_port(), model_repository=fault_repo, registry=tmp_path_factory.mktemp("reg") / "registry.db",
        models=["sentiment", "faulty"], admin_token=admin_token, torch_threads=1, replica_cpus=0.1,
        # Two replicas of every version: a dead one leaves another to carry the traffic.
        autoscaling=AutoscalingSettings(min_replicas=2, max_replicas=2),
        # The corrupt version's two replicas fail side by side: one round of failed loads, not two.
        deploy_attempts=2,
    )
    runner = Runner(cfg)
    runner.start()
    url = f"http://127.0.0.1:{cfg.port}"
    wait_for(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, 120, "ingress ready")
    wait_for(lambda: len(_tritons("sentiment", "1")) == 2, REPLACE_S, "two sentiment v1 replicas")
    yield {"url": url, "runner": runner, "token": admin_token}
    delete_serve_apps()


def _tritons(model: str, version: str) -> list[psutil.Process]:
    """The live tritonservers this test process started (through Ray) for one model version."""
    found = []
    for p in psutil.Process(os.getpid()).children(recursive=True):
        try:
            if p.name() == "tritonserver" and p.status() != psutil.STATUS_ZOMBIE and any(
                f"distilserve-{model}-v{version}-" in arg for arg in p.cmdline()
            ):
                found.append(p)
        except psutil.NoSuchProcess:
            continue
    return found


class Load:
    """Light load: `threads` clients sending /v1/predict one after another; every answer recorded."""

    def __init__(self, url: str, threads: int = 2, model: str = "sentiment") -> None:
        self.url, self.model = url, model
        self.records: list[tuple[float, float, int, str]] = []  # (start, end, status, body)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        with httpx.Client(timeout=60) as client:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    r = client.post(f"{self.url}/v1/predict", json={"model": self.model, "inputs": ["steady load"]})
                    status, body = r.status_code, r.text[:200]
                except httpx.HTTPError as e:
                    status, body = 0, repr(e)
                self.records.append((t0, time.monotonic(), status, body))

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=90)

    def successes_since(self, t: float) -> int:
        return sum(1 for s, _, code, _ in list(self.records) if s >= t and code == 200)

    def failures(self) -> list[tuple[float, float, int, str]]:
        return [r for r in self.records if r[2] != 200]


def _assert_outage_bounded(load: Load, t_kill: float) -> None:
    failures = load.failures()
    # Failures only in the outage window, only as unavailability (never a 4xx or a hang).
    for start, _end, status, body in failures:
        assert t_kill - 1 <= start <= t_kill + RECOVERY_S, (start - t_kill, status, body)
        assert status in (500, 503), (status, body)
    after = [r for r in load.records if r[0] > t_kill + RECOVERY_S]
    assert len(after) >= 5 and all(r[2] == 200 for r in after), after[:5]
    ok_after = [r for r in load.records if r[0] > t_kill and r[2] == 200]
    assert ok_after and ok_after[0][0] - t_kill <= RECOVERY_S


def test_pickle_only_or_truncated_weights_are_refused_by_the_loader(fault_repo: Path) -> None:
    """The model code itself loads safetensors only: no pickle file is ever deserialised."""
    from serving.backends import load_classifier_module

    module = load_classifier_module(fault_repo, "sentiment")
    with pytest.raises(Exception, match=r"(?i)safetensors|model\.safetensors|no file"):
        module.Classifier(fault_repo / "sentiment" / "4")
    with pytest.raises(Exception, match=r"(?i)deserializ|header|incomplete|safetensor|invalid"):
        module.Classifier(fault_repo / "sentiment" / "3")
    assert module.Classifier(fault_repo / "sentiment" / "1").predict(["fine"])[1]


def test_model_failure_is_500_for_its_requests_only(stack) -> None:
    from concurrent.futures import ThreadPoolExecutor

    jobs = ([("faulty", "boom here", 500)] * 12 + [("faulty", "all calm", 200)] * 12
            + [("sentiment", "boom is just a word here", 200)] * 12)

    def send(job: tuple[str, str, int]) -> tuple[int, int, str]:
        r = httpx.post(f"{stack['url']}/v1/predict", json={"model": job[0], "inputs": [job[1]]}, timeout=60)
        return job[2], r.status_code, r.text

    with ThreadPoolExecutor(max_workers=8) as pool:  # interleaved, so Triton may batch them together
        results = list(pool.map(send, jobs))
    for want, got, body in results:
        assert got == want, (want, got, body[:300])
        if got == 500:
            assert "exploded on purpose" in body and "faulty" in body


def test_triton_killed_under_load_is_replaced_and_traffic_recovers(stack) -> None:
    # The stack is ready once each version answers; a second replica may still be starting its Triton
    # (seen in a CI rehearsal when this test ran first: one tritonserver, started a second earlier).
    wait_for(lambda: len(_tritons("sentiment", "1")) == 2, REPLACE_S, "two sentiment v1 replicas")
    victims = _tritons("sentiment", "1")
    assert len(victims) == 2, victims
    victim = victims[0]
    replica = victim.parent()
    assert replica is not None and "ServeReplica" in " ".join(replica.cmdline()) + replica.name()
    with Load(stack["url"]) as load:
        wait_for(lambda: load.successes_since(0) >= 5, 60, "load flowing")
        t_kill = time.monotonic()
        os.kill(victim.pid, signal.SIGKILL)
        # The health check fails the replica that lost its Triton; Serve stops and replaces it.
        wait_for(lambda: not replica.is_running() or replica.status() == psutil.STATUS_ZOMBIE, RECOVERY_S * 4,
                 "replica with the dead Triton stopped by its health check")
        wait_for(lambda: load.successes_since(t_kill + RECOVERY_S) >= 5, 120, "load after the window")
    _assert_outage_bounded(load, t_kill)
    wait_for(lambda: len(_tritons("sentiment", "1")) == 2, REPLACE_S, "a replacement replica with its own Triton")
    assert victim.pid not in {p.pid for p in _tritons("sentiment", "1")}


def test_ray_replica_killed_traffic_continues_on_the_other(stack) -> None:
    wait_for(lambda: len(_tritons("sentiment", "1")) == 2, REPLACE_S, "two sentiment v1 replicas")
    triton = _tritons("sentiment", "1")[0]
    replica = triton.parent()
    assert replica is not None
    with Load(stack["url"]) as load:
        wait_for(lambda: load.successes_since(0) >= 5, 60, "load flowing")
        t_kill = time.monotonic()
        replica.kill()  # SIGKILL the Ray replica actor's worker process
        wait_for(lambda: load.successes_since(t_kill + RECOVERY_S) >= 5, 120, "load after the window")
    _assert_outage_bounded(load, t_kill)
    # Its Triton died with it (PR_SET_PDEATHSIG), and Serve brings the replica count back.
    wait_for(lambda: not triton.is_running() or triton.status() == psutil.STATUS_ZOMBIE, 30, "orphan Triton gone")
    wait_for(lambda: len(_tritons("sentiment", "1")) == 2, REPLACE_S, "replacement replica")


def test_corrupt_weights_deploy_fails_clearly_while_live_version_serves(stack) -> None:
    url, auth = stack["url"], {"Authorization": f"Bearer {stack['token']}"}
    r = httpx.post(f"{url}/admin/models/sentiment/deploy", json={"version": "3"}, headers=auth, timeout=60)
    assert r.status_code == 200 and r.json()["ready"] is False, r.text
    registry = stack["runner"].registry
    with Load(url) as load:
        stack["runner"].reconcile()  # what `distilserve serve` does every second; returns once the deploy failed
    assert load.failures() == [] and load.successes_since(0) >= 3
    events = [e for e in registry.events("sentiment") if e.data.get("version") == "3"]
    failed = [e for e in events if e.kind == "deploy_failed"]
    assert failed, [(e.kind, e.message[:200]) for e in events]
    message = failed[0].message
    assert "version 3" in message and any(w in message.lower() for w in ("safetensor", "deserializ", "header")), message
    assert "3" not in stack["runner"].deployed["sentiment"]
    assert httpx.get(f"{url}/v2/models/sentiment/versions/3/ready").status_code == 503
    assert registry.get_traffic("sentiment") == {"1": 100.0}
    r = httpx.post(f"{url}/v1/predict", json={"inputs": ["still here"]}, timeout=60)
    assert r.status_code == 200 and r.json()["version"] == "1"
    # The failed version is not retried forever: the warm request was released.
    assert "3" not in registry.warm_versions("sentiment")
