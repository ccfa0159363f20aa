"""The OIP codec, without a server: JSON and binary-extension requests, responses, errors."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from serving.triton import codec

LIMITS = codec.Limits(max_items=4, max_text_chars=10)


def _json(body: dict) -> bytes:
    return json.dumps(body).encode()


def _binary_request(texts: list[bytes], shape: list[int], **outputs: bool) -> tuple[bytes, int]:
    raw = b"".join(struct.pack("<I", len(t)) + t for t in texts)
    head: dict = {"inputs": [{"name": "TEXT", "shape": shape, "datatype": "BYTES",
                              "parameters": {"binary_data_size": len(raw)}}]}
    if outputs:
        head["outputs"] = [{"name": k, "parameters": {"binary_data": v}} for k, v in outputs.items()]
    header = json.dumps(head).encode()
    return header + raw, len(header)


def test_json_request_flat_and_nested_shapes() -> None:
    for shape, data in (([2], ["a", "b"]), ([2, 1], [["a"], ["b"]])):
        req = codec.parse_infer_request(
            _json({"id": "r1", "inputs": [{"name": "TEXT", "shape": shape, "datatype": "BYTES", "data": data}]}),
            None, LIMITS,
        )
        assert req.texts == ["a", "b"] and req.request_id == "r1" and req.shape == shape


def test_binary_request_as_tritonclient_sends_it() -> None:
    body, hlen = _binary_request(["caf\u00e9".encode(), b"ok"], [2, 1])
    req = codec.parse_infer_request(body, hlen, LIMITS)
    assert req.texts == ["caf\u00e9", "ok"]


@pytest.mark.parametrize(
    ("body", "hlen", "field"),
    [
        (b"{nope", None, "body"),
        (b"[]", None, "body"),
        (_json({}), None, "inputs"),
        (_json({"inputs": [{"name": "X", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}), None, "inputs[0].name"),
        (_json({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "INT8", "data": [1]}]}), None, "inputs[0].datatype"),
        (_json({"inputs": [{"name": "TEXT", "shape": [3], "datatype": "BYTES", "data": ["a"]}]}), None, "inputs[0].shape"),
        (_json({"inputs": [{"name": "TEXT", "shape": "1", "datatype": "BYTES", "data": ["a"]}]}), None, "inputs[0].shape"),
        (_json({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": [1]}]}), None, "inputs[0].data[0]"),
        (_json({"inputs": [{"name": "TEXT", "shape": [5], "datatype": "BYTES", "data": list("abcde")}]}), None, "inputs[0].data"),
        (_json({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["x" * 11]}]}), None, "inputs[0].data[0]"),
        (_json({"inputs": [{"name": "TEXT", "shape": [0], "datatype": "BYTES", "data": []}]}), None, "inputs[0].data"),
        (_json({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
                "outputs": [{"name": "LOGITS"}]}), None, "outputs[0].name"),
        (_json({"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["a"]}]}), 10_000,
         codec.HEADER_LENGTH),
        (_binary_request([b"\xff"], [1])[0], _binary_request([b"\xff"], [1])[1], "inputs[0].data[0]"),
        (_binary_request([b"ok"], [1])[0][:-1], _binary_request([b"ok"], [1])[1], "binary_data_size"),
    ],
    ids=["malformed", "not-object", "no-inputs", "wrong-name", "wrong-datatype", "shape-mismatch",
         "shape-not-list", "non-string", "too-many", "too-long", "empty", "unknown-output",
         "header-longer-than-body", "invalid-utf8", "truncated-binary"],
)
def test_bad_requests_name_the_field(body: bytes, hlen: int | None, field: str) -> None:
    with pytest.raises(codec.CodecError) as err:
        codec.parse_infer_request(body, hlen, LIMITS)
    assert field in str(err.value)


def test_json_response_defaults_to_both_outputs() -> None:
    req = codec.InferRequest(texts=["a", "b"], shape=[2], request_id="r9")
    body, hlen = codec.build_infer_response("m", "3", req, np.array([[0.1, 0.9], [0.8, 0.2]]), ["pos", "neg"])
    assert hlen is None
    out = json.loads(body)
    assert out["model_version"] == "3" and out["id"] == "r9"
    by_name = {o["name"]: o for o in out["outputs"]}
    assert by_name["PROBABILITIES"]["shape"] == [2, 2] and by_name["LABEL"]["data"] == ["pos", "neg"]


def test_binary_response_round_trips_through_tritonclient() -> None:
    from tritonclient.http import InferResult

    body, hlen = _binary_request([b"a", b"b"], [2, 1])
    req = codec.parse_infer_request(body, hlen, LIMITS)
    req.binary_default = True
    probs = np.array([[0.25, 0.75], [0.5, 0.5]], dtype=np.float32)
    out, out_hlen = codec.build_infer_response("m", "1", req, probs, ["x", "y\u00e9"])
    assert out_hlen is not None
    result = InferResult.from_response_body(out, header_length=out_hlen)
    np.testing.assert_array_equal(result.as_numpy("PROBABILITIES"), probs)
    assert result.as_numpy("LABEL").shape == (2, 1)  # as Triton: [batch] + dims [1]
    assert [v.decode() for v in result.as_numpy("LABEL").reshape(-1)] == ["x", "y\u00e9"]


def test_only_requested_outputs_are_returned() -> None:
    req = codec.InferRequest(texts=["a"], shape=[1], outputs={"LABEL": False})
    out = json.loads(codec.build_infer_response("m", "1", req, np.array([[1.0]]), ["z"])[0])
    assert [o["name"] for o in out["outputs"]] == ["LABEL"]


def test_classification_extension_returns_the_top_classes_as_triton_does() -> None:
    head = {"inputs": [{"name": "TEXT", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]}],
            "outputs": [{"name": "PROBABILITIES", "parameters": {"classification": 2}}]}
    req = codec.parse_infer_request(_json(head), None, LIMITS)
    assert req.class_count == 2
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]], dtype=np.float32)
    body, _ = codec.build_infer_response("m", "1", req, probs, ["pos", "neg"], names=["neg", "neu", "pos"])
    (out,) = json.loads(body)["outputs"]
    assert out == {"name": "PROBABILITIES", "datatype": "BYTES", "shape": [2, 2],
                   "data": ["0.700000:1:neu", "0.200000:2:pos", "0.500000:0:neg", "0.300000:2:pos"]}


@pytest.mark.parametrize(
    ("output", "count"),
    [("LABEL", 1), ("PROBABILITIES", 0.5), ("PROBABILITIES", -1), ("PROBABILITIES", "2"), ("PROBABILITIES", True)],
    ids=["on-label", "fraction", "negative", "string", "bool"],
)
def test_classification_refused_with_the_field_named(output: str, count: object) -> None:
    head = {"inputs": [{"name": "TEXT", "shape": [1], "datatype": "BYTES", "data": ["a"]}],
            "outputs": [{"name": output, "parameters": {"classification": count}}]}
    with pytest.raises(codec.CodecError, match=r"^outputs\[0\]\.parameters\.classification: "):
        codec.parse_infer_request(_json(head), None, LIMITS)


def test_label_is_n_by_1_and_metadata_matches_triton() -> None:
    req = codec.InferRequest(texts=["a", "b"], shape=[2])
    body, _ = codec.build_infer_response("m", "1", req, np.array([[0.1, 0.9], [0.8, 0.2]]), ["pos", "neg"])
    assert {o["name"]: o["shape"] for o in json.loads(body)["outputs"]} == {"PROBABILITIES": [2, 2], "LABEL": [2, 1]}
    meta = codec.model_metadata("m", ["1"])
    assert meta["inputs"][0]["shape"] == [-1, 1] and meta["outputs"][1]["shape"] == [-1, 1]
