"""Two models on the real stack, called with `tritonclient.grpc` unchanged and over HTTP.

`sentiment` comes from the tiny repository fixture (three labels); `topics` is trained here
through the CLI from a CSV and a tiny BERT folder (two labels, its own config.pbtxt). Both are
served by one ingress, whose gRPC listener answers from the same data plane as HTTP.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from tritonclient.utils import InferenceServerException

from serving.config import AutoscalingSettings, ServeConfig
from tests.helpers import delete_serve_apps, free_port, wait_for
from tests.integration.test_own_model import LABELS, _bert_folder, _cli, _texts

TEXTS = ["the team won the match today", "rain and a cold wind all day"]


@pytest.fixture(scope="module")
def stack(ray_session, tiny_repo: Path, tmp_path_factory: pytest.TempPathFactory, admin_token: str):
    from serving.stack import start_stack

    where = tmp_path_factory.mktemp("grpc")
    repo = where / "repo"
    shutil.copytree(tiny_repo / "sentiment", repo / "sentiment", symlinks=True)
    csv = where / "topics.csv"
    _texts(200, seed=1).to_csv(csv, index=False)
    base = _bert_folder(where / "base", labels=LABELS)
    assert _cli("distill", "teacher", "--model", "topics", "--data", csv, "--text-column", "body",
                "--label-column", "topic", "--base-model", base, "--max-seq-len", "32", "--epochs", "1",
                "--repo", repo) == 0
    port = free_port()
    grpc_port = free_port()
    while grpc_port == port:
        grpc_port = free_port()
    cfg = ServeConfig(
        port=port, grpc_port=grpc_port, model_repository=repo, registry=where / "registry.db",
        models=["sentiment", "topics"], admin_token=admin_token, torch_threads=1, replica_cpus=0.1,
        autoscaling=AutoscalingSettings(min_replicas=1, max_replicas=1),
    )
    start_stack(cfg, reconcile_s=0.5)
    url = f"http://127.0.0.1:{port}"
    for model in cfg.models:
        wait_for(lambda m=model: httpx.get(f"{url}/v2/models/{m}/ready", timeout=5).status_code == 200, 300,
                 f"{model} to be ready")
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    yield {"url": url, "grpc": client}
    client.close()
    delete_serve_apps()


def _labels_over_http(url: str, model: str, version: str | None = None) -> tuple[str, list[str]]:
    body = {"model": model, "inputs": TEXTS, **({"version": version} if version else {})}
    r = httpx.post(f"{url}/v1/predict", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["version"], [p["label"] for p in r.json()["predictions"]]


def _text_input(texts: list[str], shape: list[int] | None = None) -> grpcclient.InferInput:
    inp = grpcclient.InferInput("TEXT", shape or [len(texts), 1], "BYTES")
    inp.set_data_from_numpy(np.array([[t.encode()] for t in texts], dtype=np.object_).reshape(shape or [len(texts), 1]))
    return inp


@pytest.mark.parametrize("model,labels", [("sentiment", 3), ("topics", 2)])
def test_tritonclient_grpc_infers_like_http(stack, model: str, labels: int) -> None:
    client = stack["grpc"]
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(model)
    meta = client.get_model_metadata(model, as_json=True)
    assert meta["name"] == model and meta["inputs"][0]["shape"] == ["-1", "1"], meta
    version, http_labels = _labels_over_http(stack["url"], model)
    result = client.infer(model, [_text_input(TEXTS)], model_version=version)
    assert result.get_response().model_version == version
    label = result.as_numpy("LABEL")
    probs = result.as_numpy("PROBABILITIES")
    assert label.shape == (2, 1) and probs.shape == (2, labels) and probs.dtype == np.float32, (label, probs)
    assert [x.decode() for x in label.reshape(-1)] == http_labels  # the same version, the same answers
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-4)
    if model == "topics":
        assert set(http_labels) <= set(LABELS)
    # The classification extension: the top class as "value:index:label".
    top = client.infer(model, [_text_input(TEXTS[:1])], model_version=version,
                       outputs=[grpcclient.InferRequestedOutput("PROBABILITIES", class_count=1)])
    assert top.as_numpy("PROBABILITIES")[0][0].decode().split(":")[2] == http_labels[0]


@pytest.mark.parametrize("model", ["sentiment", "topics"])
def test_tritonclient_grpc_tooling_calls(stack, model: str) -> None:
    client = stack["grpc"]
    config = client.get_model_config(model, as_json=True)["config"]
    assert config["name"] == model and int(config["max_batch_size"]) > 0, config
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"]
    assert stats and all(s["name"] == model for s in stats) and any(int(s.get("inference_count", 0)) > 0 for s in stats)
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"sentiment", "topics"} <= {m["name"] for m in index}, index


@pytest.mark.parametrize("call,status,field", [
    (lambda c: c.infer("nosuchmodel", [_text_input(TEXTS)]), "StatusCode.NOT_FOUND", "model"),
    (lambda c: c.infer("topics", [_text_input(TEXTS)], model_version="99"), "StatusCode.NOT_FOUND", "version"),
    (lambda c: c.infer("topics", [_text_input([" "])]), "StatusCode.INVALID_ARGUMENT", "inputs[0].data[0]"),
    (lambda c: c.infer("topics", [_text_input(TEXTS, [1, 2])]), "StatusCode.INVALID_ARGUMENT", "inputs[0].shape"),
    (lambda c: c.infer("topics", [_int_input()]), "StatusCode.INVALID_ARGUMENT", "inputs[0].datatype"),
    (lambda c: c.infer("topics", [_text_input(TEXTS)], outputs=[grpcclient.InferRequestedOutput("LABEL", class_count=2)]),
     "StatusCode.INVALID_ARGUMENT", "outputs[0].parameters.classification"),
    (lambda c: c.get_model_metadata("bad name!"), "StatusCode.INVALID_ARGUMENT", "model"),
], ids=["unknown-model", "unknown-version", "blank-text", "shape", "datatype", "class-count-on-label", "bad-name"])
def test_invalid_requests_get_the_http_status_as_grpc_codes(stack, call, status: str, field: str) -> None:
    with pytest.raises(InferenceServerException) as err:
        call(stack["grpc"])
    assert err.value.status() == status and err.value.message().startswith(f"{field}:"), err.value
    # The stack keeps answering.
    assert stack["grpc"].is_model_ready("topics")


def _int_input() -> grpcclient.InferInput:
    inp = grpcclient.InferInput("TEXT", [1, 1], "INT32")
    inp.set_data_from_numpy(np.array([[1]], dtype=np.int32))
    return inp


def test_both_models_over_http(stack) -> None:
    _, sentiment = _labels_over_http(stack["url"], "sentiment")
    _, topics = _labels_over_http(stack["url"], "topics")
    assert len(sentiment) == len(topics) == 2 and set(topics) <= set(LABELS)
    assert not set(sentiment) & set(LABELS)  # each model answers with its own label set
