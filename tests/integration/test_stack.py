"""The whole stack, real: Ray Serve ingress -> ModelVersion replicas -> their own tritonserver."""

from __future__ import annotations

import json
import os
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from serving.config import ServeConfig
from tests.helpers import delete_serve_apps, descendants, free_port, listeners_off_loopback, wait_for


@pytest.fixture(scope="module")
def stack(ray_session, tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory, admin_token: str):
    from serving.runner import Runner

    cfg = ServeConfig(
        port=free_port(),
        model_repository=tiny_repo,
        registry=tmp_path_factory.mktemp("reg") / "registry.db",
        models=["sentiment", "faulty"],
        admin_token=admin_token,
        torch_threads=1,
        replica_cpus=0.1,
    )
    runner = Runner(cfg)
    runner.start()
    url = f"http://127.0.0.1:{cfg.port}"
    wait_for(lambda: httpx.get(f"{url}/v2/health/ready").status_code == 200, 60, "ingress ready")
    yield {"url": url, "runner": runner, "cfg": cfg, "token": admin_token}
    delete_serve_apps()


def _predict(url: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/v1/predict", json=body, timeout=30)


def test_predict_returns_version_and_probabilities(stack) -> None:
    r = _predict(stack["url"], {"model": "sentiment", "inputs": ["I love this", "awful"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["version"] == "1" and r.headers["x-model-version"] == "1"
    assert len(body["predictions"]) == 2
    for p in body["predictions"]:
        assert set(p["scores"]) == {"negative", "neutral", "positive"}
        assert abs(sum(p["scores"].values()) - 1) < 1e-4
        assert p["label"] == max(p["scores"], key=p["scores"].get)


def test_tritonclient_http_works_against_the_ingress_unchanged(stack) -> None:
    texts = ["I love this", "this is terrible", "meh"]
    client = httpclient.InferenceServerClient(stack["url"].removeprefix("http://"))
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("sentiment")
    arr = np.array([t.encode() for t in texts], dtype=np.object_).reshape(-1, 1)
    inp = httpclient.InferInput("TEXT", list(arr.shape), "BYTES")
    inp.set_data_from_numpy(arr)  # binary tensor extension, as tritonclient sends by default
    result = client.infer("sentiment", [inp])
    labels = [x.decode() for x in result.as_numpy("LABEL").reshape(-1)]
    probs = result.as_numpy("PROBABILITIES")
    v1 = _predict(stack["url"], {"inputs": texts}).json()["predictions"]
    assert labels == [p["label"] for p in v1]
    np.testing.assert_allclose(probs[:, 2], [p["scores"]["positive"] for p in v1], atol=1e-5)
    # JSON outputs requested explicitly, too.
    out = [httpclient.InferRequestedOutput("LABEL", binary_data=False)]
    inp.set_data_from_numpy(arr, binary_data=False)
    labels_json = client.infer("sentiment", [inp], outputs=out).as_numpy("LABEL")
    assert [x if isinstance(x, str) else x.decode() for x in labels_json.reshape(-1)] == labels


def test_triton_tooling_calls_work_against_the_ingress(stack) -> None:
    """What tritonclient.http offers beyond inference: model config, statistics, repository index,
    compressed request bodies, and the classification extension."""
    client = httpclient.InferenceServerClient(stack["url"].removeprefix("http://"))
    meta = client.get_model_metadata("sentiment")
    assert meta["inputs"][0]["shape"] == [-1, 1] and meta["outputs"][1]["shape"] == [-1, 1]
    config = client.get_model_config("sentiment")  # as the live version's own Triton reports it
    assert config["name"] == "sentiment" and config["max_batch_size"] > 0
    assert [i["name"] for i in config["input"]] == ["TEXT"]
    assert {o["name"] for o in config["output"]} == {"PROBABILITIES", "LABEL"}
    texts = ["I love this", "this is terrible"]
    arr = np.array([t.encode() for t in texts], dtype=np.object_).reshape(-1, 1)
    inp = httpclient.InferInput("TEXT", list(arr.shape), "BYTES")
    inp.set_data_from_numpy(arr)
    plain = client.infer("sentiment", [inp]).as_numpy("LABEL")
    assert plain.shape == (2, 1)
    for algorithm in ("gzip", "deflate"):
        packed = client.infer("sentiment", [inp], request_compression_algorithm=algorithm)
        assert packed.as_numpy("LABEL").tolist() == plain.tolist(), algorithm
    top = client.infer("sentiment", [inp], outputs=[
        httpclient.InferRequestedOutput("PROBABILITIES", binary_data=False, class_count=2)]).as_numpy("PROBABILITIES")
    assert top.shape == (2, 2)
    rows = [[(x if isinstance(x, str) else x.decode()).split(":") for x in row] for row in top.tolist()]
    assert [row[0][2] for row in rows] == [x.decode() for x in plain.reshape(-1)]  # "value:index:label"
    assert all(float(first[0]) >= float(second[0]) for first, second in rows)
    with pytest.raises(Exception, match="classification"):
        client.infer("sentiment", [inp], outputs=[httpclient.InferRequestedOutput("LABEL", class_count=1)])
    stats = client.get_inference_statistics("sentiment")["model_stats"]
    live = next(s for s in stats if s["version"] == "1")
    assert live["name"] == "sentiment" and live["inference_count"] >= 6
    assert live["inference_stats"]["success"]["count"] >= 3 and live["inference_stats"]["success"]["ns"] > 0
    index = client.get_model_repository_index()
    assert {"name": "sentiment", "version": "1", "state": "READY", "reason": ""} in index
    assert {(e["name"], e["version"]) for e in index} >= {("sentiment", "1"), ("sentiment", "2")}
    r = httpx.post(f"{stack['url']}/v2/models/sentiment/infer", content=b"\x1f\x8b not gzip",
                   headers={"Content-Encoding": "gzip"})
    assert r.status_code == 400 and r.json()["error"].startswith("body:")


def _deploy(stack, version: str) -> None:
    auth = {"Authorization": f"Bearer {stack['token']}"}
    r = httpx.post(f"{stack['url']}/admin/models/sentiment/deploy", json={"version": version}, headers=auth)
    assert r.status_code == 200, r.text
    stack["runner"].reconcile()  # what `distilserve serve` does every second
    wait_for(lambda: httpx.get(f"{stack['url']}/v2/models/sentiment/versions/{version}/ready").status_code == 200,
             120, f"version {version} ready")


def test_version_without_deployment_is_503_until_deployed(stack) -> None:
    body = {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["hi"]}]}
    r = httpx.post(f"{stack['url']}/v2/models/sentiment/versions/2/infer", json=body, timeout=30)
    assert r.status_code == 503 and "not deployed" in r.json()["error"]
    _deploy(stack, "2")


def test_oip_json_request_and_pinned_version(stack) -> None:
    body = {"inputs": [{"name": "TEXT", "shape": [1, 1], "datatype": "BYTES", "data": [["great stuff"]]}]}
    r = httpx.post(f"{stack['url']}/v2/models/sentiment/versions/2/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["model_version"] == "2" and r.headers["x-model-version"] == "2"
    names = {o["name"]: o for o in out["outputs"]}
    # LABEL is [N, 1], as Triton reports it (config dims [1] plus the batch); it was [N] (issue 15).
    assert names["PROBABILITIES"]["shape"] == [1, 3] and names["LABEL"]["shape"] == [1, 1]


BIG = "x" * 2001


@pytest.mark.parametrize(
    ("path", "body", "status", "field"),
    [
        ("/v1/predict", b"{not json", 422, "body"),
        ("/v1/predict", {"model": "sentiment"}, 422, "inputs"),
        ("/v1/predict", {"inputs": "a string"}, 422, "inputs"),
        ("/v1/predict", {"inputs": []}, 422, "inputs"),
        ("/v1/predict", {"inputs": [1, 2]}, 422, "inputs[0]"),
        ("/v1/predict", {"inputs": ["ok"] * 65}, 422, "inputs"),  # max_items is 64
        ("/v1/predict", {"inputs": [BIG]}, 422, "inputs[0]"),  # max_text_chars is 2000
        ("/v1/predict", {"inputs": ["  "]}, 422, "inputs[0]"),
        ("/v1/predict", {"inputs": ["ok"], "user_id": 7}, 422, "user_id"),
        ("/v1/predict", {"inputs": ["ok"], "extra": 1}, 422, "extra"),
        ("/v1/predict", {"model": "nope", "inputs": ["ok"]}, 404, "model"),
        ("/v1/predict", {"model": "../etc", "inputs": ["ok"]}, 422, "model"),
        ("/v1/predict", {"inputs": ["ok"], "version": "99"}, 404, "version"),
        ("/v2/models/sentiment/infer", {"inputs": []}, 400, "inputs"),
        ("/v2/models/sentiment/infer",
         {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "FP32", "data": [1.0]}]}, 400, "datatype"),
        ("/v2/models/sentiment/infer",
         {"inputs": [{"name": "TEXT", "shape": [2], "datatype": "BYTES", "data": ["a"]}]}, 400, "shape"),
        ("/v2/models/sentiment/infer",
         {"inputs": [{"name": "IMAGE", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}, 400, "name"),
        ("/v2/models/sentiment/infer",
         {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [3]}]}, 400, "data[0]"),
        ("/v2/models/unknown/infer",
         {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}, 404, "model"),
        ("/v2/models/sentiment/versions/abc/infer",
         {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}, 400, "version"),
    ],
    ids=["malformed-json", "missing-inputs", "inputs-not-list", "empty-inputs", "non-string-item",
         "too-many-items", "oversized-text", "blank-text", "user-id-wrong-type", "unknown-key",
         "unknown-model", "bad-model-name", "unknown-version", "oip-empty-inputs", "oip-wrong-datatype",
         "oip-wrong-shape", "oip-wrong-name", "oip-non-string", "oip-unknown-model", "oip-bad-version"],
)
def test_bad_input_is_a_4xx_naming_the_field(stack, path: str, body, status: int, field: str) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    r = httpx.post(stack["url"] + path, content=content, timeout=30)
    assert r.status_code == status, r.text
    assert field in r.json()["error"], r.json()


def test_oversized_body_is_413(stack) -> None:
    r = httpx.post(stack["url"] + "/v1/predict", content=b"x" * 1_000_001, timeout=30)
    assert r.status_code == 413 and "body" in r.json()["error"]


def test_model_failure_is_500_for_that_request_only(stack) -> None:
    bad = _predict(stack["url"], {"model": "faulty", "inputs": ["boom goes the model"]})
    assert bad.status_code == 500 and "exploded on purpose" in bad.json()["error"]
    good = _predict(stack["url"], {"model": "faulty", "inputs": ["all calm"]})
    assert good.status_code == 200 and good.json()["predictions"][0]["label"] == "positive"
    assert _predict(stack["url"], {"inputs": ["other model unaffected"]}).status_code == 200


def test_feedback_attaches_to_a_prediction(stack) -> None:
    rid = _predict(stack["url"], {"inputs": ["loved it"]}).json()["request_id"]
    r = httpx.post(stack["url"] + "/v1/feedback", json={"request_id": rid, "label": "positive"})
    assert r.status_code == 200, r.text
    r = httpx.post(stack["url"] + "/v1/feedback", json={"request_id": "nope", "outcome": 1})
    assert r.status_code == 404 and "request_id" in r.json()["error"]
    r = httpx.post(stack["url"] + "/v1/feedback", json={"request_id": rid})
    assert r.status_code == 422


def test_metrics_count_requests_per_version(stack) -> None:
    _predict(stack["url"], {"inputs": ["count me"]})
    text = httpx.get(stack["url"] + "/metrics").text
    assert 'distilserve_requests_total{code="200",model="sentiment",route="v1",version="1"}' in text
    assert "distilserve_request_latency_seconds_bucket" in text


def test_admin_needs_token_and_switches_traffic(stack) -> None:
    url, token = stack["url"], stack["token"]
    r = httpx.post(f"{url}/admin/models/sentiment/traffic", json={"weights": {"2": 100}})
    assert r.status_code == 401
    r = httpx.post(f"{url}/admin/models/sentiment/traffic", json={"weights": {"2": 100}},
                   headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    auth = {"Authorization": f"Bearer {token}"}
    # Version 3 does not exist: traffic may only move to deployed, ready versions.
    r = httpx.post(f"{url}/admin/models/sentiment/traffic", json={"weights": {"1": 50, "3": 50}}, headers=auth)
    assert r.status_code == 409 and "'3'" in r.json()["error"]
    _deploy(stack, "2")
    r = httpx.post(f"{url}/admin/models/sentiment/traffic", json={"weights": {"2": 100}}, headers=auth)
    assert r.status_code == 200, r.text
    # wait_for fails after 5 s; a second wall-clock assertion after it could only fail on a slow last poll.
    wait_for(lambda: _predict(url, {"inputs": ["x"]}).json()["version"] == "2", 5, "traffic on version 2")
    r = httpx.post(f"{url}/admin/models/sentiment/rollback", json={}, headers=auth)
    assert r.status_code == 200 and r.json()["traffic"] == {"1": 100.0}, r.text
    wait_for(lambda: _predict(url, {"inputs": ["x"]}).json()["version"] == "1", 5, "traffic back on version 1")


def test_nothing_listens_beyond_loopback(stack) -> None:
    # Ray's gcs, raylet, workers and every tritonserver descend from this (the driver) process.
    ours = descendants(os.getpid())
    assert len(ours) > 5
    assert listeners_off_loopback(ours) == []


def _version_calls(url: str, path: str) -> float:
    import re

    text = httpx.get(url + "/metrics").text
    pattern = rf'^distilserve_version_calls_total{{model="sentiment",path="{path}",version="1"}} ([0-9.e+]+)$'
    return sum(float(m) for m in re.findall(pattern, text, re.M))


def test_ingress_sends_straight_to_a_same_node_triton(stack) -> None:
    """The short path (serving/transport/endpoints.py): replicas publish their Triton, the ingress calls it
    directly; answers equal those through the replica's Serve deployment."""
    url = stack["url"]
    wait_for(lambda: _predict(url, {"inputs": ["short path"]}).status_code == 200
             and _version_calls(url, "triton") > 0, 30, "a call on the short path")
    before = _version_calls(url, "triton")
    direct = _predict(url, {"inputs": ["good movie", "bad movie"], "version": "1"}).json()
    assert _version_calls(url, "triton") > before
    from ray import serve

    probs, labels = serve.get_deployment_handle("ModelVersion", app_name="sentiment-v1").predict.remote(
        ["good movie", "bad movie"]).result()
    assert [p["label"] for p in direct["predictions"]] == labels
    for pred, row in zip(direct["predictions"], probs, strict=True):
        assert list(pred["scores"].values()) == pytest.approx([float(x) for x in row], abs=1e-5)
