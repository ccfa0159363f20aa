"""Open Inference Protocol (v2) request/response codec for text classification. Pure.

Handles the JSON form and Triton's binary tensor data extension (what `tritonclient.http`
sends by default: a JSON header of `Inference-Header-Content-Length` bytes followed by raw
tensors; BYTES elements are 4-byte little-endian lengths followed by the bytes).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from distilserve.core.tensors import INPUT_TEXT, OUTPUT_LABEL, OUTPUT_NAMES, OUTPUT_PROBABILITIES

INPUT_NAME = INPUT_TEXT
HEADER_LENGTH = "Inference-Header-Content-Length"


class CodecError(ValueError):
    """A client error in an inference request; `field` names the offending part."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field


@dataclass(frozen=True)
class Limits:
    max_items: int = 64
    max_text_chars: int = 2000


@dataclass
class InferRequest:
    texts: list[str]
    shape: list[int]
    request_id: str | None = None
    outputs: dict[str, bool] = field(default_factory=dict)  # name -> binary?
    binary_default: bool = False
    class_count: int = 0  # > 0: PROBABILITIES as Triton's classification extension (top classes)


def _split_body(body: bytes, header_length: int | None) -> tuple[dict, bytes]:
    if header_length is None:
        header_bytes, binary = body, b""
    else:
        if header_length < 0 or header_length > len(body):
            raise CodecError(HEADER_LENGTH, f"{header_length} is outside the body of {len(body)} bytes")
        header_bytes, binary = body[:header_length], body[header_length:]
    try:
        header = json.loads(header_bytes)
    except (ValueError, UnicodeDecodeError) as e:
        raise CodecError("body", f"malformed JSON: {e}") from None
    except RecursionError:  # deeply nested arrays/objects: a client error, not a server fault
        raise CodecError("body", "malformed JSON: nested too deeply") from None
    if not isinstance(header, dict):
        raise CodecError("body", f"must be a JSON object, got {type(header).__name__}")
    return header, binary


def _deserialize_bytes(raw: bytes, field_name: str) -> list[bytes]:
    items, pos = [], 0
    while pos < len(raw):
        if pos + 4 > len(raw):
            raise CodecError(field_name, "truncated BYTES element length")
        (n,) = struct.unpack_from("<I", raw, pos)
        pos += 4
        if pos + n > len(raw):
            raise CodecError(field_name, "truncated BYTES element")
        items.append(raw[pos : pos + n])
        pos += n
    return items


def _check_shape(shape: object, n: int) -> list[int]:
    f = "inputs[0].shape"
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise CodecError(f, f"must be a list of integers, got {shape!r}")
    if shape not in ([n], [n, 1]):
        raise CodecError(f, f"must be [N] or [N, 1] with N = {n} items, got {shape}")
    return shape


def header_length(headers: Mapping[str, str]) -> int | None:
    """The binary extension's JSON header length from the request headers (None: all JSON)."""
    raw = headers.get(HEADER_LENGTH.lower())
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise CodecError(HEADER_LENGTH, f"{raw!r} is not an integer") from None


def parse_infer_request(body: bytes, header_length: int | None, limits: Limits) -> InferRequest:
    """Validate an OIP infer request carrying one BYTES input `TEXT`; CodecError names the field."""
    header, binary = _split_body(body, header_length)
    inputs = header.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise CodecError("inputs", "must be a non-empty list of input tensors")
    if len(inputs) != 1:
        raise CodecError("inputs", f"expected exactly one input named {INPUT_NAME!r}, got {len(inputs)}")
    tensor = inputs[0]
    if not isinstance(tensor, dict):
        raise CodecError("inputs[0]", "must be an object")
    if tensor.get("name") != INPUT_NAME:
        raise CodecError("inputs[0].name", f"must be {INPUT_NAME!r}, got {tensor.get('name')!r}")
    if tensor.get("datatype") != "BYTES":
        raise CodecError("inputs[0].datatype", f"must be 'BYTES', got {tensor.get('datatype')!r}")
    params = tensor.get("parameters") or {}
    if not isinstance(params, dict):
        raise CodecError("inputs[0].parameters", "must be an object")
    size = params.get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size != len(binary):
            raise CodecError("inputs[0].parameters.binary_data_size", f"{size!r} does not match the {len(binary)} binary bytes sent")
        raw_items = _deserialize_bytes(binary, "inputs[0]")
    else:
        if binary:
            raise CodecError("body", "binary data sent but no input declares binary_data_size")
        data = tensor.get("data")
        if not isinstance(data, list):
            raise CodecError("inputs[0].data", "must be a list of strings")
        flat = [x for row in data for x in (row if isinstance(row, list) else [row])]
        for i, x in enumerate(flat):
            if not isinstance(x, str):
                raise CodecError(f"inputs[0].data[{i}]", f"must be a string, got {type(x).__name__}")
        raw_items = flat
    texts = []
    for i, item in enumerate(raw_items):
        if isinstance(item, bytes):
            try:
                item = item.decode("utf-8")
            except UnicodeDecodeError:
                raise CodecError(f"inputs[0].data[{i}]", "is not valid UTF-8") from None
        texts.append(item)
    _check_common(texts, "inputs[0].data", limits)
    shape = _check_shape(tensor.get("shape"), len(texts))
    outputs, class_count = _parse_outputs(header)
    rid = header.get("id")
    if rid is not None and not isinstance(rid, str):
        raise CodecError("id", f"must be a string, got {type(rid).__name__}")
    top = header.get("parameters") or {}
    if not isinstance(top, dict):
        raise CodecError("parameters", "must be an object")
    return InferRequest(texts, shape, rid, outputs, bool(top.get("binary_data_output", False)), class_count)


def _check_common(texts: list[str], field_name: str, limits: Limits) -> None:
    if not texts:
        raise CodecError(field_name, "must hold at least one text")
    if len(texts) > limits.max_items:
        raise CodecError(field_name, f"holds {len(texts)} items; at most {limits.max_items} per request")
    for i, t in enumerate(texts):
        if len(t) > limits.max_text_chars:
            raise CodecError(f"{field_name}[{i}]", f"is {len(t)} characters long; at most {limits.max_text_chars}")
        if not t.strip():
            raise CodecError(f"{field_name}[{i}]", "is empty or blank")


def check_texts(texts: list[str], field_name: str, limits: Limits) -> None:
    """The same item rules for the JSON API (/v1/predict) as for OIP."""
    _check_common(texts, field_name, limits)


def _parse_outputs(header: dict) -> tuple[dict[str, bool], int]:
    """Requested outputs (name -> binary?) and the classification extension's class_count (0: off)."""
    outputs = header.get("outputs")
    if outputs is None:
        return {}, 0
    if not isinstance(outputs, list):
        raise CodecError("outputs", "must be a list")
    chosen: dict[str, bool] = {}
    class_count = 0
    for i, out in enumerate(outputs):
        if not isinstance(out, dict) or out.get("name") not in OUTPUT_NAMES:
            name = out.get("name") if isinstance(out, dict) else out
            raise CodecError(f"outputs[{i}].name", f"must be one of {list(OUTPUT_NAMES)}, got {name!r}")
        params = out.get("parameters") or {}
        if not isinstance(params, dict):
            raise CodecError(f"outputs[{i}].parameters", "must be an object")
        chosen[out["name"]] = bool(params.get("binary_data", False))
        # Triton's HTTP name of the classification extension's parameter (gRPC: class_count).
        count = params.get("classification", 0)
        if count:
            class_count = _class_count(count, out["name"], f"outputs[{i}].parameters.classification")
    return chosen, class_count


def _class_count(count: object, name: str, field_name: str) -> int:
    if name != OUTPUT_PROBABILITIES:
        raise CodecError(field_name, f"classification applies to {OUTPUT_PROBABILITIES!r} only, not {name!r}")
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise CodecError(field_name, f"must be a positive integer, got {count!r}")
    return count


def classify(probs: np.ndarray, names: list[str], k: int) -> list[list[str]]:
    """Triton's classification extension: per row, the top `k` classes as "value:index:label",
    highest first (Triton formats the value with C++ std::to_string, i.e. six decimals)."""
    rows = []
    for row in np.asarray(probs, dtype=np.float32).reshape(len(probs), -1):
        top = sorted(range(len(row)), key=lambda j: (-float(row[j]), j))[:k]
        rows.append([f"{float(row[j]):f}:{j}:{names[j]}" if j < len(names) else f"{float(row[j]):f}:{j}" for j in top])
    return rows


def _serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(x)) + x for x in items)


def build_infer_response(
    model: str, version: str, req: InferRequest, probs: np.ndarray, labels: list[str], names: list[str] | None = None
) -> tuple[bytes, int | None]:
    """Body and, when any output is binary, the JSON header length for the response header.

    `names` (the version's class names) are needed only for a classification request."""
    n = len(labels)
    wanted = req.outputs or {name: req.binary_default for name in OUTPUT_NAMES}
    tensors, blobs = [], []
    for name in OUTPUT_NAMES:
        if name not in wanted:
            continue
        binary = wanted[name]
        if name == OUTPUT_PROBABILITIES and req.class_count:
            top = classify(probs, names or [], req.class_count)
            spec = {"name": name, "datatype": "BYTES", "shape": [n, len(top[0]) if top else 0]}
            flat = [x for row in top for x in row]
            raw = _serialize_bytes([x.encode() for x in flat]) if binary else None
            data = None if binary else flat
        elif name == OUTPUT_PROBABILITIES:
            arr = np.asarray(probs, dtype=np.float32).reshape(n, -1)
            spec = {"name": name, "datatype": "FP32", "shape": list(arr.shape)}
            raw = arr.astype("<f4").tobytes() if binary else None
            data = None if binary else [float(x) for x in arr.reshape(-1)]
        else:
            spec = {"name": name, "datatype": "BYTES", "shape": [n, 1]}  # as Triton: [batch] + dims [1]
            raw = _serialize_bytes([x.encode() for x in labels]) if binary else None
            data = None if binary else list(labels)
        if raw is not None:
            spec["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        else:
            spec["data"] = data
        tensors.append(spec)
    head: dict = {"model_name": model, "model_version": version, "outputs": tensors}
    if req.request_id is not None:
        head["id"] = req.request_id
    header = json.dumps(head).encode()
    if not blobs:
        return header, None
    return header + b"".join(blobs), len(header)


def model_metadata(model: str, versions: list[str], num_labels: int | None = None) -> dict:
    """OIP model metadata for the text classifier."""
    return {
        "name": model,
        "versions": versions,
        "platform": "python",
        "inputs": [{"name": INPUT_NAME, "datatype": "BYTES", "shape": [-1, 1]}],
        "outputs": [
            {"name": OUTPUT_PROBABILITIES, "datatype": "FP32", "shape": [-1, num_labels or -1]},
            {"name": OUTPUT_LABEL, "datatype": "BYTES", "shape": [-1, 1]},
        ],
    }
