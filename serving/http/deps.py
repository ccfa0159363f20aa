"""Shared dependencies of the routers: the live services, the admin bearer check, the body limit.

The Ingress deployment puts a `Services` on `app.state.services` when it starts; until then
every route answers 503.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from serving.admin_control import AdminControl
from serving.dataplane import DataPlane
from serving.errors import ApiError


@dataclass(frozen=True)
class Services:
    plane: DataPlane
    control: AdminControl
    admin_token: bytes | None
    max_body_bytes: int


def services(request: Request) -> Services:
    found = getattr(request.app.state, "services", None)
    if found is None:
        raise ApiError(503, "the ingress is starting", {"Retry-After": "1"})
    return found


def plane(request: Request) -> DataPlane:
    return services(request).plane


def control(request: Request) -> AdminControl:
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


def require_admin(request: Request) -> None:
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
    return raw


def known_model(model: str, request: Request) -> str:
    """The path's model, checked (400 for a bad name, 404 for a model not served)."""
    plane(request).known_model(model)
    return model


Plane = Annotated[DataPlane, Depends(plane)]
Model = Annotated[str, Depends(known_model)]
Control = Annotated[AdminControl, Depends(control)]
Body = Annotated[bytes, Depends(body)]
