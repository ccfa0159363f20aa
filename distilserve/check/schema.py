"""Response shapes of the Open Inference Protocol v2 and of the /v1 JSON API. Pure.

Each function returns a list of problems (empty when the body conforms), so a check can
say exactly what is wrong instead of just "bad schema".
"""

from __future__ import annotations

import math
from typing import Any

OIP_DATATYPES = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
                 "FP16", "FP32", "FP64", "BF16", "BYTES"}


def flatten(data: Any) -> list:
    if isinstance(data, list):
        return [x for item in data for x in flatten(item)]
    return [data]


def _tensor_spec_problems(t: Any, where: str, need_data: bool) -> list[str]:
    if not isinstance(t, dict):
        return [f"{where} is not an object"]
    out = []
    if not isinstance(t.get("name"), str) or not t.get("name"):
        out.append(f"{where}.name is missing or not a string")
    if t.get("datatype") not in OIP_DATATYPES:
        out.append(f"{where}.datatype {t.get('datatype')!r} is not an OIP datatype")
    shape = t.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        out.append(f"{where}.shape {shape!r} is not a list of integers")
        return out
    if need_data:
        if "data" not in t:
            params = t.get("parameters") or {}
            if not (isinstance(params, dict) and "binary_data_size" in params):
                out.append(f"{where}.data is missing")
            return out
        flat = flatten(t["data"])
        if any(d < 0 for d in shape):
            out.append(f"{where}.shape {shape} has a negative dimension in a response")
        elif len(flat) != math.prod(shape):
            out.append(f"{where}.data holds {len(flat)} elements but shape {shape} needs {math.prod(shape)}")
    return out


def metadata_problems(body: Any, model: str) -> list[str]:
    """OIP model metadata: name, platform?, inputs and outputs tensor specs."""
    if not isinstance(body, dict):
        return [f"model metadata is not a JSON object: {type(body).__name__}"]
    out = []
    if body.get("name") != model:
        out.append(f"name is {body.get('name')!r}, expected {model!r}")
    for key in ("inputs", "outputs"):
        specs = body.get(key)
        if not isinstance(specs, list) or not specs:
            out.append(f"{key} must be a non-empty list")
            continue
        for i, spec in enumerate(specs):
            out += _tensor_spec_problems(spec, f"{key}[{i}]", need_data=False)
    versions = body.get("versions")
    if versions is not None and not (isinstance(versions, list) and all(isinstance(v, str) for v in versions)):
        out.append(f"versions {versions!r} must be a list of strings")
    return out


def oip_infer_problems(body: Any, model: str, request_id: str | None, n: int,
                       known_outputs: set[str] | None = None) -> list[str]:
    """An OIP inference response for `n` items of a request with id `request_id`."""
    if not isinstance(body, dict):
        return [f"response is not a JSON object: {type(body).__name__}"]
    out = []
    if body.get("model_name") != model:
        out.append(f"model_name is {body.get('model_name')!r}, expected {model!r}")
    if "model_version" in body and not isinstance(body["model_version"], str):
        out.append(f"model_version {body['model_version']!r} is not a string")
    if request_id is not None and body.get("id") != request_id:
        out.append(f"id is {body.get('id')!r}, expected the request's id {request_id!r}")
    outputs = body.get("outputs")
    if not isinstance(outputs, list) or not outputs:
        return [*out, "outputs must be a non-empty list"]
    for i, t in enumerate(outputs):
        where = f"outputs[{i}]"
        out += _tensor_spec_problems(t, where, need_data=True)
        if not isinstance(t, dict):
            continue
        if known_outputs and t.get("name") not in known_outputs:
            out.append(f"{where}.name {t.get('name')!r} is not an output of the model metadata {sorted(known_outputs)}")
        shape = t.get("shape")
        if isinstance(shape, list) and shape and shape[0] != n:
            out.append(f"{where}.shape {shape} does not start with the batch size {n}")
    return out


def v1_predict_problems(body: Any, model: str, n: int) -> list[str]:
    """/v1/predict: {"model", "version", "request_id", "predictions": [{"label", "scores"}]}."""
    if not isinstance(body, dict):
        return [f"response is not a JSON object: {type(body).__name__}"]
    out = []
    if body.get("model") != model:
        out.append(f"model is {body.get('model')!r}, expected {model!r}")
    for key in ("version", "request_id"):
        if not isinstance(body.get(key), str) or not body.get(key):
            out.append(f"{key} is missing or not a non-empty string")
    preds = body.get("predictions")
    if not isinstance(preds, list) or len(preds) != n:
        return [*out, f"predictions must be a list of {n} items, got {preds!r:.80}"]
    for i, p in enumerate(preds):
        where = f"predictions[{i}]"
        if not isinstance(p, dict) or not isinstance(p.get("label"), str):
            out.append(f"{where}.label is missing or not a string")
            continue
        scores = p.get("scores")
        if not isinstance(scores, dict) or not scores or not all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in scores.values()
        ):
            out.append(f"{where}.scores must map labels to finite numbers, got {scores!r:.80}")
            continue
        if abs(sum(scores.values()) - 1) > 1e-3:
            out.append(f"{where}.scores sum to {sum(scores.values()):.4f}, not 1")
        if p["label"] != max(scores, key=scores.__getitem__):
            out.append(f"{where}.label {p['label']!r} is not the top-scoring label")
    return out


def error_problems(status: int, body: Any, hints: tuple[str, ...]) -> list[str]:
    """A 4xx must be a JSON object with an 'error' string naming one of `hints` (case-insensitive)."""
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        return [f"{status} body is not JSON {{'error': '...'}}: {str(body)[:120]!r}"]
    message = body["error"].lower()
    if hints and not any(h.lower() in message for h in hints):
        return [f"error {body['error'][:160]!r} does not name the field (any of {list(hints)})"]
    return []
