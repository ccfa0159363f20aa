"""The bad (and oddly good) inputs the suite sends, as data. Pure.

`expect` is what a correct server does: "4xx" (refused, with an error naming one of
`hints`), "ok" (answered with a valid response) or "not5xx" (either, but never a server
fault: the input is legal in the protocol, and a server may accept or refuse it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

Expect = Literal["4xx", "ok", "not5xx"]

UNICODE_TEXT = "Ünïcödé ✓ — 日本語のテキスト 😀 مرحبا שלום"
CONTROL_TEXT = "bell\x07 null\x00 escape\x1b[31m tab\t newline\n del\x7f"
HUGE_BODY_BYTES = 2_000_000  # above any sane default body limit (ours is 1 MB)
LONG_TEXT_CHARS = 100_000
DEEP = 100_000  # nesting depth: beyond any recursive JSON parser's stack


@dataclass(frozen=True)
class Case:
    api: Literal["oip", "v1"]
    name: str
    body: bytes
    expect: Expect
    hints: tuple[str, ...] = ()
    path: str | None = None  # default: the API's inference route
    n: int = 1  # items in a request expected to succeed


def _j(obj: object) -> bytes:
    return json.dumps(obj).encode()


def oip_tensor(input_name: str, texts: list, rank: int, datatype: str = "BYTES") -> dict:
    shape = [len(texts)] if rank == 1 else [len(texts), 1]
    return {"name": input_name, "shape": shape, "datatype": datatype, "data": texts}


def oip_cases(model: str, input_name: str, rank: int) -> list[Case]:
    def body(texts: list, **over: object) -> dict:
        tensor = {**oip_tensor(input_name, texts, rank), **over}
        return {"inputs": [tensor]}

    whole = ("body", "json", "parse")
    return [
        Case("oip", "malformed-json", b'{"inputs": [', "4xx", whole),
        Case("oip", "not-an-object", b"[1, 2, 3]", "4xx", (*whole, "object", "inputs")),
        Case("oip", "empty-body", b"", "4xx", (*whole, "inputs", "empty")),
        Case("oip", "non-utf8-body", b'{"inputs": "\xff\xfe\xfa"}', "4xx", (*whole, "utf", "inputs")),
        Case("oip", "deeply-nested-json", b"[" * DEEP + b"]" * DEEP, "4xx", (*whole, "depth", "nest", "recursion")),
        Case("oip", "huge-body", _j(body(["x" * HUGE_BODY_BYTES])), "4xx",
             ("body", "size", "large", "limit", "bytes")),
        Case("oip", "missing-inputs", _j({}), "4xx", ("inputs",)),
        Case("oip", "inputs-not-a-list", _j({"inputs": "hello"}), "4xx", ("inputs",)),
        Case("oip", "empty-inputs", _j({"inputs": []}), "4xx", ("inputs",)),
        Case("oip", "wrong-input-name", _j(body(["hi"], name="NOT_AN_INPUT")), "4xx", ("name", "NOT_AN_INPUT")),
        Case("oip", "wrong-datatype", _j(body([1.5], datatype="FP32")), "4xx", ("datatype", "data-type", "data type")),
        Case("oip", "shape-mismatch", _j(body(["a"], shape=[3] if rank == 1 else [3, 1])), "4xx", ("shape",)),
        Case("oip", "shape-not-ints", _j(body(["a"], shape=["one"])), "4xx", ("shape",)),
        Case("oip", "data-item-wrong-type", _j(body([{"text": "a"}])), "4xx", ("data", "bytes", "string")),
        Case("oip", "data-not-a-list", _j(body(["a"], data="a")), "4xx", ("data",)),
        Case("oip", "huge-number", b'{"inputs": [{"name": "%s", "shape": [1], "datatype": "BYTES", "data": [1e999]}]}'
             % input_name.encode(), "4xx", ("data", "json", "body", "number")),
        Case("oip", "unknown-model", _j(body(["hi"])), "4xx", ("model", "not-a-model-x"),
             path="/v2/models/not-a-model-x/infer"),
        Case("oip", "unknown-version", _j(body(["hi"])), "4xx", ("version", "987654321"),
             path=f"/v2/models/{model}/versions/987654321/infer"),
        Case("oip", "empty-data", _j(body([])), "not5xx"),
        Case("oip", "empty-string", _j(body([""])), "not5xx"),
        Case("oip", "very-long-text", _j(body(["word " * (LONG_TEXT_CHARS // 5)])), "not5xx"),
        Case("oip", "id-not-a-string", _j({**body(["hi"]), "id": {"x": 1}}), "not5xx"),
        Case("oip", "control-characters", _j(body([CONTROL_TEXT])), "not5xx"),
        Case("oip", "unicode", _j(body([UNICODE_TEXT, "plain text"])), "ok", n=2),
    ]


def v1_cases(model: str) -> list[Case]:
    whole = ("body", "json")
    return [
        Case("v1", "malformed-json", b'{"inputs": [', "4xx", whole),
        Case("v1", "not-an-object", b'"just a string"', "4xx", (*whole, "object")),
        Case("v1", "empty-body", b"", "4xx", (*whole, "inputs")),
        Case("v1", "non-utf8-body", b'{"inputs": ["\xff\xfe"]}', "4xx", (*whole, "utf", "inputs")),
        Case("v1", "deeply-nested-json", b'{"inputs": ' + b"[" * DEEP + b"]" * DEEP + b"}", "4xx",
             (*whole, "inputs", "recursion", "depth")),
        Case("v1", "huge-body", _j({"model": model, "inputs": ["x" * HUGE_BODY_BYTES]}), "4xx",
             ("body", "size", "large", "limit", "bytes")),
        Case("v1", "missing-inputs", _j({"model": model}), "4xx", ("inputs",)),
        Case("v1", "inputs-wrong-type", _j({"model": model, "inputs": "hello"}), "4xx", ("inputs",)),
        Case("v1", "empty-inputs", _j({"model": model, "inputs": []}), "4xx", ("inputs",)),
        Case("v1", "item-wrong-type", _j({"model": model, "inputs": ["ok", 7]}), "4xx", ("inputs",)),
        Case("v1", "huge-number", b'{"model": "%s", "inputs": [1e999]}' % model.encode(), "4xx",
             ("inputs", "body", "json", "number")),
        Case("v1", "unknown-key", _j({"model": model, "inputs": ["ok"], "surprise": 1}), "4xx", ("surprise",)),
        Case("v1", "user-id-wrong-type", _j({"model": model, "inputs": ["ok"], "user_id": 12}), "4xx", ("user_id",)),
        Case("v1", "unknown-model", _j({"model": "not-a-model-x", "inputs": ["ok"]}), "4xx", ("model",)),
        Case("v1", "model-path-traversal", _j({"model": "../../etc/passwd", "inputs": ["ok"]}), "4xx", ("model",)),
        Case("v1", "version-path-traversal", _j({"model": model, "inputs": ["ok"], "version": "1/../2"}), "4xx",
             ("version",)),
        Case("v1", "control-characters", _j({"model": model, "inputs": [CONTROL_TEXT]}), "not5xx"),
        Case("v1", "unicode", _j({"model": model, "inputs": [UNICODE_TEXT, "plain text"]}), "ok", n=2),
    ]
