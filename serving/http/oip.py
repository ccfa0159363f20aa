"""Open Inference Protocol v2 over HTTP (as Triton and KServe), plus /metrics."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from serving.http.deps import Body, Plane
from serving.triton import codec

router = APIRouter()


@router.get("/v2/health/live")
async def live() -> dict:
    return {"live": True}


@router.get("/v2/health/ready")
async def ready(plane: Plane) -> JSONResponse:
    missing = plane.models_without_traffic()
    if missing:
        return JSONResponse({"ready": False, "error": f"no live version for {missing}"}, status_code=503)
    return JSONResponse({"ready": True})


@router.get("/v2")
async def server_metadata() -> dict:
    return {"name": "distilserve", "version": "0.1.0",
            "extensions": ["binary_tensor_data", "classification", "model_configuration", "statistics",
                           "model_repository"]}


@router.get("/v2/models/{model}")
async def model_metadata(model: str, plane: Plane) -> dict:
    return plane.model_metadata(model)


@router.get("/v2/models/{model}/versions/{version}")
async def version_metadata(model: str, version: str, plane: Plane) -> dict:
    return plane.version_metadata(model, version)


@router.get("/v2/models/{model}/ready")
async def model_ready(model: str, plane: Plane) -> JSONResponse:
    ok = await plane.model_ready(model)
    return JSONResponse({"name": model, "ready": ok}, status_code=200 if ok else 503)


@router.get("/v2/models/{model}/versions/{version}/ready")
async def version_ready(model: str, version: str, plane: Plane) -> JSONResponse:
    ok = await plane.version_ready(model, version)
    return JSONResponse({"name": model, "version": version, "ready": ok}, status_code=200 if ok else 503)


@router.post("/v2/models/{model}/infer")
async def infer(model: str, request: Request, plane: Plane, body: Body) -> Response:
    return await _infer(plane, model, None, request, body)


@router.post("/v2/models/{model}/versions/{version}/infer")
async def infer_version(model: str, version: str, request: Request, plane: Plane, body: Body) -> Response:
    return await _infer(plane, model, version, request, body)


async def _infer(plane: Plane, model: str, pinned: str | None, request: Request, body: bytes) -> Response:
    try:
        req = codec.parse_infer_request(body, codec.header_length(request.headers), plane.limits)
    except codec.CodecError as e:
        raise plane.refuse("v2", 400, str(e)) from None
    rid = req.request_id or uuid.uuid4().hex
    result = await plane.infer(model, pinned, None, req.texts, route="v2", request_id=rid)
    names = await plane.label_names(model, result.version) if req.class_count else None
    content, json_len = codec.build_infer_response(model, result.version, req, result.probs, result.labels, names)
    headers = {"X-Model-Version": result.version, "X-Request-ID": rid}
    if json_len is None:
        return Response(content, media_type="application/json", headers=headers)
    headers[codec.HEADER_LENGTH] = str(json_len)
    return Response(content, media_type="application/octet-stream", headers=headers)


@router.get("/metrics")
async def metrics(plane: Plane) -> Response:
    return Response(plane.metrics_text(), media_type="text/plain; version=0.0.4")
