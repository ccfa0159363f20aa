"""Shared dependencies of the routers: the live services, the admin bearer check, the body limit.

The Ingress deployment hands its `Services` over with `attach` when it starts; until then every
route answers 503. They are also kept in this module under the app's `app_id`: behind Ray
Serve's own proxy (`http_server: serve-proxy`) the replica serves the copy of the FastAPI app that
`@serve.ingress` froze when the class was defined, not the module's `app` object the deployment
attaches to; the copy keeps the `app_id` (it is part of the pickled state).

Every dependency is `async def`, though none awaits anything: FastAPI runs a plain `def`
dependency in its thread pool, a thread hop per request that cost a quarter of the stack's
throughput at 4-16 concurrent clients (BENCHMARKS.md, 2026-11-30 re-run; py-spy showed the anyio
workers). tests/unit/test_http_routes.py keeps them async.
"""

from __future__ import annotations

import hmac
import zlib
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from serving.control.admin import AdminControl
from serving.dataplane import DataPlane
from serving.errors import ApiError


@dataclass(frozen=True)
class Services:
    plane: DataPlane
    control: AdminControl
    admin_token: bytes | None
    max_body_bytes: int
    ui_source: Any = None  # a serving.ui.source.UiSource, when the control plane provides one


_attached: dict[str, Services] = {}


def attach_services(app_id: str, found: Services) -> None:
    _attached[app_id] = found


def services(request: Request) -> Services:
    state = request.app.state
    found = getattr(state, "services", None) or _attached.get(getattr(state, "app_id", ""))
    if found is None:
        raise ApiError(503, "the ingress is starting", {"Retry-After": "1"})
    return found


async def plane(request: Request) -> DataPlane:
    return services(request).plane


async def control(request: Request) -> AdminControl:
    return services(request).control


def check_bearer(expected: bytes | None, header: str) -> None:
    """403 when the admin API is off (no token), 401 unless `header` is 'Bearer <the token>'."""
    if expected is None:
        raise ApiError(403, "admin API disabled: start the server with an admin token")
    scheme, _, token = header.partition(" ")
    # Constant-time comparison; the token is never logged.
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.encode(), expected):
        raise ApiError(401, "authorization: a valid 'Bearer <token>' header is required",
                       {"WWW-Authenticate": "Bearer"})


async def require_admin(request: Request) -> None:
    check_bearer(services(request).admin_token, request.headers.get("authorization", ""))


async def body(request: Request) -> bytes:
    """The request body, refused with 413 past the configured limit (declared or actual)."""
    limit = services(request).max_body_bytes
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"body: {declared} bytes is over the limit of {limit} bytes")
    raw = await request.body()
    if len(raw) > limit:
        raise ApiError(413, f"body: {len(raw)} bytes is over the limit of {limit} bytes")
    return decode_body(raw, request.headers.get("content-encoding", ""), limit)


# Content-Encoding -> zlib wbits: gzip framing, zlib framing ("deflate" as HTTP means it).
_ENCODINGS = {"gzip": 16 + zlib.MAX_WBITS, "x-gzip": 16 + zlib.MAX_WBITS, "deflate": zlib.MAX_WBITS}


def decode_body(raw: bytes, encoding: str, limit: int) -> bytes:
    """Undo a gzip/deflate Content-Encoding (what tritonclient's request_compression_algorithm
    sends); the inflated body obeys the same limit (413), so a small bomb cannot grow past it."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return raw
    if encoding not in _ENCODINGS:
        raise ApiError(415, f"content-encoding: {encoding[:40]!r} is not one of gzip, deflate, identity")
    inflater = zlib.decompressobj(_ENCODINGS[encoding])
    try:
        out = inflater.decompress(raw, limit + 1)
    except zlib.error as e:
        raise ApiError(400, f"body: not valid {encoding} data ({e})") from None
    if len(out) > limit:
        raise ApiError(413, f"body: over the limit of {limit} bytes once decompressed")
    if not inflater.eof:
        raise ApiError(400, f"body: truncated {encoding} data")
    return out


async def known_model(model: str, request: Request) -> str:
    """The path's model, checked (400 for a bad name, 404 for a model not served)."""
    services(request).plane.known_model(model)
    return model


Plane = Annotated[DataPlane, Depends(plane)]
Model = Annotated[str, Depends(known_model)]
Control = Annotated[AdminControl, Depends(control)]
Body = Annotated[bytes, Depends(body)]
