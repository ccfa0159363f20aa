"""Triton's gRPC messages <-> what the data plane takes and gives. Pure: no server, no I/O.

The same rules as the HTTP codec (serving/triton/codec.py), reused from it: one BYTES input
`TEXT`, shape [N] or [N, 1], the item limits, the classification extension; errors are the same
`CodecError` naming the field. gRPC carries tensors in `raw_input_contents` (BYTES elements as
4-byte little-endian lengths, then the bytes) or in `contents.bytes_contents`; answers carry
PROBABILITIES (FP32 [N, C], or the top classes as BYTES with class_count) and LABEL (BYTES
[N, 1]) as `raw_output_contents`, as Triton sends them.
"""

from __future__ import annotations

from collections.abc import Mapping

import grpc
import numpy as np
from google.protobuf import json_format
from google.protobuf.message import Message
from tritonclient.grpc import service_pb2 as pb

from distilserve.core.tensors import OUTPUT_NAMES, OUTPUT_PROBABILITIES
from serving.triton.codec import (
    INPUT_NAME,
    CodecError,
    InferRequest,
    Limits,
    _check_shape,
    _class_count,
    _deserialize_bytes,
    _serialize_bytes,
    check_texts,
    classify,
)

# HTTP status of an ApiError -> gRPC code (what Triton's gRPC endpoint answers for the same fault).
_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,
    415: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.INVALID_ARGUMENT,
    429: grpc.StatusCode.UNAVAILABLE,
    500: grpc.StatusCode.INTERNAL,
    503: grpc.StatusCode.UNAVAILABLE,
}


def status_code(http_status: int) -> grpc.StatusCode:
    """The gRPC code of an HTTP-style status; other 4xx are the client's, other 5xx ours."""
    if http_status in _CODES:
        return _CODES[http_status]
    return grpc.StatusCode.INVALID_ARGUMENT if 400 <= http_status < 500 else grpc.StatusCode.INTERNAL


def trailing_metadata(headers: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The retry hint of an overload answer (Retry-After) as gRPC trailing metadata (lower case keys)."""
    return tuple((k.lower(), v) for k, v in headers.items() if k.lower() == "retry-after")


def _texts(req: pb.ModelInferRequest) -> list[str]:
    tensor = req.inputs[0]
    if req.raw_input_contents:
        if len(req.raw_input_contents) != len(req.inputs):
            raise CodecError("raw_input_contents", f"holds {len(req.raw_input_contents)} tensors for "
                                                   f"{len(req.inputs)} inputs")
        if tensor.HasField("contents"):
            raise CodecError("inputs[0].contents", "must be empty when raw_input_contents is used")
        items = _deserialize_bytes(req.raw_input_contents[0], "raw_input_contents[0]")
    else:
        items = list(tensor.contents.bytes_contents)
    texts = []
    for i, item in enumerate(items):
        try:
            texts.append(item.decode("utf-8"))
        except UnicodeDecodeError:
            raise CodecError(f"inputs[0].data[{i}]", "is not valid UTF-8") from None
    return texts


def parse_infer_request(req: pb.ModelInferRequest, limits: Limits) -> InferRequest:
    """Validate a ModelInferRequest as the HTTP codec validates its JSON; CodecError names the field."""
    if len(req.inputs) != 1:
        raise CodecError("inputs", f"expected exactly one input named {INPUT_NAME!r}, got {len(req.inputs)}")
    tensor = req.inputs[0]
    if tensor.name != INPUT_NAME:
        raise CodecError("inputs[0].name", f"must be {INPUT_NAME!r}, got {tensor.name!r}")
    if tensor.datatype != "BYTES":
        raise CodecError("inputs[0].datatype", f"must be 'BYTES', got {tensor.datatype!r}")
    texts = _texts(req)
    check_texts(texts, "inputs[0].data", limits)
    shape = _check_shape(list(tensor.shape), len(texts))
    outputs: dict[str, bool] = {}
    class_count = 0
    for i, out in enumerate(req.outputs):
        if out.name not in OUTPUT_NAMES:
            raise CodecError(f"outputs[{i}].name", f"must be one of {list(OUTPUT_NAMES)}, got {out.name!r}")
        outputs[out.name] = True  # gRPC answers are always raw
        if "classification" in out.parameters:
            count = out.parameters["classification"].int64_param
            if count:
                class_count = _class_count(count, out.name, f"outputs[{i}].parameters.classification")
    return InferRequest(texts, shape, req.id or None, outputs, True, class_count)


def build_infer_response(model: str, version: str, req: InferRequest, probs: np.ndarray, labels: list[str],
                         names: list[str] | None = None) -> pb.ModelInferResponse:
    """The answer with every requested output (all of them when none was named), raw, in order."""
    n = len(labels)
    resp = pb.ModelInferResponse(model_name=model, model_version=version, id=req.request_id or "")
    for name in OUTPUT_NAMES:
        if req.outputs and name not in req.outputs:
            continue
        if name == OUTPUT_PROBABILITIES and req.class_count:
            top = classify(probs, names or [], req.class_count)
            datatype, shape = "BYTES", [n, len(top[0]) if top else 0]
            raw = _serialize_bytes([x.encode() for row in top for x in row])
        elif name == OUTPUT_PROBABILITIES:
            arr = np.asarray(probs, dtype=np.float32).reshape(n, -1)
            datatype, shape, raw = "FP32", list(arr.shape), arr.astype("<f4").tobytes()
        else:
            datatype, shape, raw = "BYTES", [n, 1], _serialize_bytes([x.encode() for x in labels])
        resp.outputs.add(name=name, datatype=datatype, shape=shape)
        resp.raw_output_contents.append(raw)
    return resp


def from_json(data: object, message: Message) -> Message:
    """A Triton JSON document (model metadata, config, statistics, index) as its gRPC message.

    The JSON and gRPC forms share field names; fields the message does not know are dropped."""
    return json_format.ParseDict(data, message, ignore_unknown_fields=True)


def model_metadata(data: dict) -> pb.ModelMetadataResponse:
    return from_json(data, pb.ModelMetadataResponse())


def model_config(config: dict) -> pb.ModelConfigResponse:
    return from_json({"config": config}, pb.ModelConfigResponse())


def statistics(data: dict) -> pb.ModelStatisticsResponse:
    return from_json(data, pb.ModelStatisticsResponse())


def repository_index(models: list[dict]) -> pb.RepositoryIndexResponse:
    return from_json({"models": models}, pb.RepositoryIndexResponse())
