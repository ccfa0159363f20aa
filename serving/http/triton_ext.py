"""Triton's HTTP extensions that tooling calls: model configuration, statistics, repository index.

Included before the OIP router: `/v2/models/stats` must not be taken for a model named "stats".
"""

from __future__ import annotations

import json

from fastapi import APIRouter

from serving.errors import ApiError
from serving.http.deps import Body, Plane

router = APIRouter()


@router.get("/v2/models/stats")
async def all_stats(plane: Plane) -> dict:
    return plane.statistics(None, None)


@router.get("/v2/models/{model}/stats")
async def model_stats(model: str, plane: Plane) -> dict:
    return plane.statistics(model, None)


@router.get("/v2/models/{model}/versions/{version}/stats")
async def version_stats(model: str, version: str, plane: Plane) -> dict:
    return plane.statistics(model, version)


@router.get("/v2/models/{model}/config")
async def model_config(model: str, plane: Plane) -> dict:
    return await plane.model_config(model, None)


@router.get("/v2/models/{model}/versions/{version}/config")
async def version_config(model: str, version: str, plane: Plane) -> dict:
    return await plane.model_config(model, version)


@router.post("/v2/repository/index")
async def repository_index(plane: Plane, body: Body) -> list[dict]:
    try:
        req = json.loads(body) if body.strip() else {}  # tritonclient sends an empty body
    except ValueError:
        raise ApiError(400, "body: malformed JSON") from None
    ready = req.get("ready", False) if isinstance(req, dict) else None
    if not isinstance(ready, bool):
        raise ApiError(400, f"ready: must be true or false, got {ready!r}")
    return await plane.repository_index(ready)
