"""A short headless locust run (own process) against the real stack on the tiny repository."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import httpx
import pytest

from loadtests import run_locust
from serving.config import ServeConfig
from tests.helpers import delete_serve_apps, free_port, wait_for


@pytest.fixture(scope="module")
def stack_url(ray_session, tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory):
    from serving.runner import Runner

    cfg = ServeConfig(port=free_port(), model_repository=tiny_repo,
                      registry=tmp_path_factory.mktemp("reg") / "registry.db",
                      torch_threads=1, replica_cpus=0.1)
    Runner(cfg).start()
    url = f"http://127.0.0.1:{cfg.port}"
    wait_for(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, 120, "ingress ready")
    yield url
    delete_serve_apps()


def _client_errors(url: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(float(v) for v in re.findall(r"^distilserve_client_errors_total\{[^}]*\} (\S+)$", text, re.M))


def test_headless_locust_run_writes_csv_and_only_malformed_requests_are_refused(stack_url: str, tmp_path: Path):
    refused_before = _client_errors(stack_url)
    proc = run_locust.run(stack_url, "steady", 10.0, tmp_path, params={"rps": 60}, per_user_rps=10.0,
                          max_requests=2000, request_log=True, timeout_s=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(tmp_path / "locust_stats.csv") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    malformed = {n: r for n, r in rows.items() if n.startswith("malformed:")}
    served = {n: r for n, r in rows.items() if not n.startswith("malformed:") and n != "Aggregated"}
    assert set(served) == {"/v1/predict", "/v1/predict [sticky user]", "/v2/models/[model]/infer"}, list(rows)
    # Real requests all succeed; a malformed one counts as a failure unless it got a 4xx.
    failures = {n: int(r["Failure Count"]) for n, r in rows.items() if int(r["Failure Count"])}
    assert failures == {}, (tmp_path / "locust_failures.csv").read_text()
    assert all(int(r["Request Count"]) > 0 for r in served.values())
    sent_malformed = sum(int(r["Request Count"]) for r in malformed.values())
    assert sent_malformed > 0
    # The ingress itself counted them as refused (4xx), at least every one locust sent.
    assert _client_errors(stack_url) - refused_before >= sent_malformed - sum(
        int(r["Request Count"]) for n, r in malformed.items() if "unknown model" in n)  # 404s are not counted there
    assert (tmp_path / "locust_stats_history.csv").stat().st_size > 0
    assert (tmp_path / "command.txt").read_text().count("127.0.0.1") >= 1
    with open(tmp_path / "requests.csv") as f:  # requests still finishing while locust stops are logged too
        assert sum(1 for _ in f) - 1 >= int(rows["Aggregated"]["Request Count"])
