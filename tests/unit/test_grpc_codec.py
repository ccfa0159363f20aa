"""gRPC <-> data plane translation: one row per case, malformed input named by field."""

from __future__ import annotations

import struct

import grpc
import numpy as np
import pytest
from tritonclient.grpc import service_pb2 as pb

from serving.grpc import codec
from serving.triton.codec import CodecError, Limits

LIMITS = Limits(max_items=4, max_text_chars=20)


def raw(*items: bytes) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def request(shape: list[int] | None = None, *, name: str = "TEXT", datatype: str = "BYTES",
            raw_contents: list[bytes] | None = None, contents: list[bytes] | None = None,
            outputs: list[tuple[str, int]] = (), inputs: int = 1, rid: str = "") -> pb.ModelInferRequest:
    req = pb.ModelInferRequest(model_name="m", id=rid)
    for _ in range(inputs):
        tensor = req.inputs.add(name=name, datatype=datatype, shape=shape if shape is not None else [2, 1])
        if contents is not None:
            tensor.contents.bytes_contents.extend(contents)
    req.raw_input_contents.extend(raw_contents if raw_contents is not None else
                                  ([] if contents is not None else [raw(b"good", b"bad")]))
    for out_name, count in outputs:
        out = req.outputs.add(name=out_name)
        if count:
            out.parameters["classification"].int64_param = count
    return req


@pytest.mark.parametrize("req,texts,shape,outputs,class_count", [
    (request(), ["good", "bad"], [2, 1], {}, 0),  # what tritonclient.grpc sends
    (request([2]), ["good", "bad"], [2], {}, 0),
    (request(contents=[b"one", b"two"]), ["one", "two"], [2, 1], {}, 0),  # contents.bytes_contents
    (request(raw_contents=[raw("caf\u00e9".encode())], shape=[1, 1]), ["caf\u00e9"], [1, 1], {}, 0),
    (request(outputs=[("LABEL", 0)]), ["good", "bad"], [2, 1], {"LABEL": True}, 0),
    (request(outputs=[("PROBABILITIES", 2)]), ["good", "bad"], [2, 1], {"PROBABILITIES": True}, 2),
], ids=["raw-[N,1]", "raw-[N]", "bytes-contents", "utf8", "one-output", "class-count"])
def test_valid_requests(req: pb.ModelInferRequest, texts: list[str], shape: list[int], outputs: dict,
                        class_count: int) -> None:
    parsed = codec.parse_infer_request(req, LIMITS)
    assert (parsed.texts, parsed.shape, parsed.outputs, parsed.class_count) == (texts, shape, outputs, class_count)


@pytest.mark.parametrize("req,field", [
    (request(inputs=0, raw_contents=[]), "inputs"),
    (request(inputs=2), "inputs"),
    (request(name="INPUT0"), "inputs[0].name"),
    (request(datatype="FP32"), "inputs[0].datatype"),
    (request(raw_contents=[struct.pack("<I", 9) + b"abc"]), "raw_input_contents[0]"),  # element cut short
    (request(raw_contents=[b"\x01\x00"]), "raw_input_contents[0]"),  # length prefix cut short
    (request(raw_contents=[raw(b"a"), raw(b"b")]), "raw_input_contents"),  # two tensors for one input
    (request(raw_contents=[raw(b"\xff\xfe")], shape=[1, 1]), "inputs[0].data[0]"),  # not UTF-8
    (request(raw_contents=[]), "inputs[0].data"),  # no items at all
    (request(raw_contents=[raw(b"ok", b"  ")]), "inputs[0].data[1]"),  # blank
    (request(raw_contents=[raw(b"x" * 21)], shape=[1, 1]), "inputs[0].data[0]"),  # over max_text_chars
    (request(raw_contents=[raw(*[b"a"] * 5)], shape=[5, 1]), "inputs[0].data"),  # over max_items
    (request([3, 1]), "inputs[0].shape"),  # 2 items, shape says 3
    (request([1, 2]), "inputs[0].shape"),
    (request(outputs=[("SCORES", 0)]), "outputs[0].name"),
    (request(outputs=[("LABEL", 1)]), "outputs[0].parameters.classification"),
    (request(outputs=[("PROBABILITIES", -1)]), "outputs[0].parameters.classification"),
], ids=["no-input", "two-inputs", "name", "datatype", "raw-truncated-element", "raw-truncated-length",
        "raw-count", "utf8", "empty", "blank", "too-long", "too-many", "shape-count", "shape-width",
        "output-name", "class-count-on-label", "class-count-negative"])
def test_malformed_requests_name_the_field(req: pb.ModelInferRequest, field: str) -> None:
    with pytest.raises(CodecError) as err:
        codec.parse_infer_request(req, LIMITS)
    assert err.value.field == field and str(err.value).startswith(f"{field}: "), str(err.value)


def test_raw_and_contents_together_are_refused() -> None:
    req = request(contents=[b"a"], raw_contents=[raw(b"a")], shape=[1, 1])
    with pytest.raises(CodecError, match=r"^inputs\[0\].contents: "):
        codec.parse_infer_request(req, LIMITS)


PROBS = np.array([[0.1, 0.9], [0.8, 0.2]], dtype=np.float32)


def test_response_carries_fp32_probabilities_and_label_n_by_1_raw() -> None:
    parsed = codec.parse_infer_request(request(rid="r1"), LIMITS)
    resp = codec.build_infer_response("m", "3", parsed, PROBS, ["pos", "neg"])
    assert (resp.model_name, resp.model_version, resp.id) == ("m", "3", "r1")
    assert [(o.name, o.datatype, list(o.shape)) for o in resp.outputs] == [
        ("PROBABILITIES", "FP32", [2, 2]), ("LABEL", "BYTES", [2, 1])]
    assert np.array_equal(np.frombuffer(resp.raw_output_contents[0], "<f4").reshape(2, 2), PROBS)
    assert resp.raw_output_contents[1] == raw(b"pos", b"neg")


def test_response_only_the_requested_outputs_and_classification() -> None:
    label_only = codec.parse_infer_request(request(outputs=[("LABEL", 0)]), LIMITS)
    resp = codec.build_infer_response("m", "1", label_only, PROBS, ["pos", "neg"])
    assert [o.name for o in resp.outputs] == ["LABEL"] and len(resp.raw_output_contents) == 1
    top = codec.parse_infer_request(request(outputs=[("PROBABILITIES", 1)]), LIMITS)
    resp = codec.build_infer_response("m", "1", top, PROBS, ["pos", "neg"], names=["neg", "pos"])
    assert (resp.outputs[0].datatype, list(resp.outputs[0].shape)) == ("BYTES", [2, 1])
    assert resp.raw_output_contents[0] == raw(b"0.900000:1:pos", b"0.800000:0:neg")


@pytest.mark.parametrize("status,code", [
    (400, grpc.StatusCode.INVALID_ARGUMENT), (422, grpc.StatusCode.INVALID_ARGUMENT),
    (404, grpc.StatusCode.NOT_FOUND), (413, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (429, grpc.StatusCode.UNAVAILABLE), (503, grpc.StatusCode.UNAVAILABLE), (500, grpc.StatusCode.INTERNAL),
    (409, grpc.StatusCode.INVALID_ARGUMENT),  # another client error stays the client's
    (502, grpc.StatusCode.INTERNAL),
], ids=["400", "422", "404", "413", "429", "503", "500", "other-4xx", "other-5xx"])
def test_status_codes(status: int, code: grpc.StatusCode) -> None:
    assert codec.status_code(status) == code


def test_retry_hint_travels_as_trailing_metadata() -> None:
    assert codec.trailing_metadata({"Retry-After": "1", "X-Other": "no"}) == (("retry-after", "1"),)
    assert codec.trailing_metadata({}) == ()


def test_json_documents_become_their_messages() -> None:
    meta = codec.model_metadata({"name": "m", "versions": ["1"], "platform": "python",
                                 "inputs": [{"name": "TEXT", "datatype": "BYTES", "shape": [-1, 1]}]})
    assert meta.name == "m" and list(meta.inputs[0].shape) == [-1, 1]
    cfg = codec.model_config({"name": "m", "max_batch_size": 64, "backend": "python",
                              "input": [{"name": "TEXT", "data_type": "TYPE_STRING", "dims": [1]}],
                              "something_new": {"x": 1}})  # unknown fields are dropped, not fatal
    assert (cfg.config.name, cfg.config.max_batch_size, cfg.config.input[0].name) == ("m", 64, "TEXT")
    stats = codec.statistics({"model_stats": [{"name": "m", "version": "1", "inference_count": 3,
                                               "inference_stats": {"success": {"count": 3, "ns": 100}}}]})
    assert stats.model_stats[0].inference_stats.success.count == 3
    index = codec.repository_index([{"name": "m", "version": "1", "state": "READY", "reason": ""}])
    assert [(m.name, m.state) for m in index.models] == [("m", "READY")]
