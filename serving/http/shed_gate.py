"""Refuse overload at the door: an ASGI wrapper that answers a certain 429 before FastAPI runs.

With shedding on, a refused request used to cost as much as an admitted one up to the moment of
refusal: FastAPI's routing and dependencies, pydantic validating the body, the exception handler.
At 4x the peak load most requests are refusals, and on 2 cores that CPU came out of the model's
share (BENCHMARKS.md, load shedding). This wrapper sits between the HTTP server and the app. For
an inference request it reads just enough to know where the request would go (the path; for
/v1/predict the JSON body's `model`, `version` and `user_id`) and asks the data plane whether
the answer is already certain (`DataPlane.refuse_early`: every version it could reach is
refusing even one more text). Only then it answers 429 with Retry-After itself, counted as the
normal path counts it. In every other case the request goes on unchanged, its body replayed,
and the normal path decides; so behaviour is the same as without the gate, only cheaper.

Pure parts (`infer_target`, `predict_fields`) are unit-tested as tables; the wrapper is tested
against the real FastAPI app.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from serving.errors import ApiError

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def infer_target(method: str, path: str) -> tuple[str, str | None, str | None] | None:
    """(route, model, pinned version) of an inference request, from its method and path; None for
    anything else. /v1/predict names its model in the body (model None here)."""
    if method != "POST":
        return None
    if path == "/v1/predict":
        return "v1", None, None
    parts = path.split("/")
    # ['', 'v2', 'models', M, 'infer'] or ['', 'v2', 'models', M, 'versions', V, 'infer']
    if len(parts) == 5 and parts[1:3] == ["v2", "models"] and parts[4] == "infer" and parts[3]:
        return "v2", parts[3], None
    if (len(parts) == 7 and parts[1:3] == ["v2", "models"] and parts[4] == "versions" and parts[6] == "infer"
            and parts[3] and parts[5]):
        return "v2", parts[3], parts[5]
    return None


def predict_fields(body: bytes) -> tuple[str, str | None, str | None] | None:
    """(model, version, user_id) of a /v1/predict body, or None when the body is not a JSON object
    with string (or absent) fields and a non-empty list of strings as `inputs`: then the normal
    path validates it and names the field. (Size limits, such as the number of texts, are checked
    on the normal path only: under overload such a request may get the 429 instead of the 422.)"""
    try:
        doc = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deeply nested JSON: the normal path's 4xx
        return None
    if not isinstance(doc, dict):
        return None
    model, version, user_id = doc.get("model", "sentiment"), doc.get("version"), doc.get("user_id")
    if not isinstance(model, str) or not all(x is None or isinstance(x, str) for x in (version, user_id)):
        return None
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs or not all(isinstance(x, str) for x in inputs):
        return None  # the normal path answers 422 naming `inputs`, overload or not
    return model, version, user_id


class ShedGate:
    """ASGI: `app` behind an early 429 for inference requests that are certain to be refused.

    `refuse` is `DataPlane.refuse_early` (or None while the ingress starts: everything passes).
    Bodies larger than `max_body_bytes`, or with a Content-Encoding, pass through unread by the gate.
    """

    def __init__(self, app: ASGIApp, refuse: Callable[[str, str | None, str | None, str], ApiError | None],
                 max_body_bytes: int) -> None:
        self.app, self.refuse, self.max_body_bytes = app, refuse, max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        target = infer_target(scope.get("method", ""), scope.get("path", "")) if scope["type"] == "http" else None
        if target is None or _header(scope, b"content-encoding") not in (b"", b"identity"):
            return await self.app(scope, receive, send)
        route, model, pinned = target
        if model is not None:  # OIP: the path says where it goes; the body is not needed to decide
            err = self.refuse(model, pinned, None, route)
            if err is None:
                return await self.app(scope, receive, send)
            await _drain(receive)
            return await _answer(send, err)
        declared = _header(scope, b"content-length")
        if declared and (not declared.isdigit() or int(declared) > self.max_body_bytes):
            return await self.app(scope, receive, send)
        body, more = await _read(receive, self.max_body_bytes)
        fields = None if more else predict_fields(body)
        err = self.refuse(fields[0], fields[1], fields[2], route) if fields else None
        if err is None:
            return await self.app(scope, _replay(body, more, receive), send)
        return await _answer(send, err)


def _header(scope: Scope, name: bytes) -> bytes:
    for k, v in scope.get("headers", ()):
        if k.lower() == name:
            return v.strip().lower()
    return b""


async def _read(receive: Receive, limit: int) -> tuple[bytes, bool]:
    """The body up to `limit` bytes: (bytes, True if more remains unread)."""
    chunks, size = [], 0
    while True:
        msg = await receive()
        if msg["type"] != "http.request":  # the client went away
            return b"".join(chunks), False
        chunk = msg.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if not msg.get("more_body", False):
            return b"".join(chunks), False
        if size > limit:
            return b"".join(chunks), True


async def _drain(receive: Receive) -> None:
    while True:
        msg = await receive()
        if msg["type"] != "http.request" or not msg.get("more_body", False):
            return


def _replay(body: bytes, more: bool, receive: Receive) -> Receive:
    """A receive that first hands back what the gate read, then defers to the server's."""
    sent = False

    async def again() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": more}
        return await receive()

    return again


async def _answer(send: Send, err: ApiError) -> None:
    payload = json.dumps({"error": err.message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in err.headers.items()]
    await send({"type": "http.response.start", "status": err.status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
