"""Load shedding through the real stack (Ray Serve, the ingress, Triton): with a queue bound of one
request, a burst of concurrent requests (JSON API and OIP) gets fast 429s with Retry-After, every
admitted request is answered, nothing is lost, and refusals are made before the body is parsed
(serving/http/shed_gate.py)."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import httpx
import psutil
import pytest

from serving.config import SheddingSettings
from tests.helpers import one_replica_stack, wait_for

BURST = 24  # concurrent requests per burst
BURSTS = 5  # a burst whose requests happen not to overlap sheds nothing; five in a row all missing is a bug
INGRESS_CPU = max(os.sched_getaffinity(0))  # the one CPU the stack's ingress keeps to
MODEL_CPU = min(os.sched_getaffinity(0))  # and its model replica, with its Triton


@pytest.fixture(scope="module")
def stack(ray_session, tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory, admin_token: str):
    # One text outstanding per version: any request arriving while another is answered is shed.
    # The ingress keeps to one CPU (`ingress_cpus`), the model replica to another (`model_cpus`).
    with one_replica_stack(tiny_repo, tmp_path_factory.mktemp("reg"), admin_token, "/v2/health/ready", 180,
                           shedding=SheddingSettings(enabled=True, min_queue=1, max_queue=1),
                           ingress_cpus=str(INGRESS_CPU), model_cpus=str(MODEL_CPU)) as url:
        yield url


def test_the_ingress_and_the_model_keep_to_their_cpus(stack: str) -> None:
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU here: a pinned process looks like an unpinned one")

    def replicas(deployment: str) -> list[psutil.Process]:
        return [p for p in psutil.Process().children(recursive=True)
                if f"ServeReplica:{deployment}" in " ".join(_cmdline(p))]

    wait_for(lambda: len(replicas("ingress:Ingress")) == len(replicas("sentiment-v1:ModelVersion")) == 1, 60,
             "one Ingress and one ModelVersion replica (an earlier module's gone)")
    ingress, model = replicas("ingress:Ingress")[0], replicas("sentiment-v1:ModelVersion")[0]
    # The ingress's listener threads (HTTP, gRPC) started after the pin and inherited it.
    assert _affinities([ingress]) and set(_affinities([ingress]).values()) == {frozenset({INGRESS_CPU})}
    # The replica, its tritonserver and the Triton's model process(es), every thread of each.
    tritons = [p for p in model.children(recursive=True) if "tritonserver" in p.name() or "stub" in p.name()]
    assert any("tritonserver" in p.name() for p in tritons) and any("stub" in p.name() for p in tritons), tritons
    got = _affinities([model, *tritons])
    assert set(got.values()) == {frozenset({MODEL_CPU})}, got


def _affinities(processes: list[psutil.Process]) -> dict[int, frozenset[int]]:
    """Every thread's CPU affinity, by thread id (a thread that ends while listed is skipped)."""
    found = {}
    for p in processes:
        for t in p.threads():
            try:
                found[t.id] = frozenset(os.sched_getaffinity(t.id))
            except ProcessLookupError:
                continue
    return found


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return p.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return []


async def _burst(url: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=BURST, max_keepalive_connections=BURST)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        return await asyncio.gather(*(
            client.post(f"{url}/v1/predict", json={"model": "sentiment", "inputs": [f"a fine day number {i}"]})
            if i % 2 else
            client.post(f"{url}/v2/models/sentiment/infer",
                        json={"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [f"day {i}"]}]})
            for i in range(BURST)))


def test_a_burst_past_the_queue_bound_gets_429_with_retry_after_and_admitted_requests_succeed(stack: str) -> None:
    shed = admitted = sent = 0
    for _ in range(BURSTS):
        responses = asyncio.run(_burst(stack))
        sent += BURST
        codes = [r.status_code for r in responses]
        assert set(codes) <= {200, 429}, [(r.status_code, r.text[:200]) for r in responses if r.status_code not in (200, 429)]
        for r in responses:
            if r.status_code == 429:
                assert re.fullmatch(r"[1-9][0-9]*", r.headers.get("retry-after", "")), r.headers
                assert re.search(r"version \d+ of model 'sentiment' is overloaded", r.json()["error"]), r.text
            elif "predictions" not in r.json():  # OIP
                assert r.json()["outputs"][0]["data"], r.text
            else:
                assert r.json()["predictions"][0]["label"]
        shed += codes.count(429)
        admitted += codes.count(200)
        if shed and admitted:
            break
    assert shed > 0 and admitted > 0, (shed, admitted)
    assert shed + admitted == sent  # nothing lost: every request answered, 200 or 429
    text = httpx.get(f"{stack}/metrics").text
    counted = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("distilserve_shed_requests_total{") and 'source="user"' in line]
    assert sum(counted) == shed, text[-2000:]
    early = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
             if line.startswith("distilserve_shed_early_requests_total{")]
    # The queue was full when the later requests of a burst arrived: the gate refused them unparsed.
    assert 0 < sum(early) <= shed, text[-2000:]
