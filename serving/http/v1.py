"""The JSON API: /v1/predict and /v1/feedback."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from serving import api_models
from serving.errors import ApiError, describe_validation
from serving.http.deps import Body, Plane
from serving.triton import codec

router = APIRouter()


@router.post("/v1/predict")
async def predict(plane: Plane, body: Body) -> JSONResponse:
    try:
        req = api_models.PredictRequest.model_validate_json(body)
        codec.check_texts(req.inputs, "inputs", plane.limits)
    except ValidationError as e:
        raise plane.refuse("v1", 422, describe_validation(list(e.errors()))) from None
    except codec.CodecError as e:
        raise plane.refuse("v1", 422, str(e)) from None
    rid = uuid.uuid4().hex
    version, predictions, cached = await plane.predict(req.model, req.version, req.user_id, req.inputs, rid)
    return JSONResponse(
        {"model": req.model, "version": version, "request_id": rid, "cached": cached, "predictions": predictions},
        headers={"X-Model-Version": version, "X-Request-ID": rid},
    )


@router.post("/v1/feedback")
async def feedback(plane: Plane, body: Body) -> JSONResponse:
    try:
        fb = api_models.FeedbackRequest.model_validate_json(body)
    except ValidationError as e:
        raise ApiError(422, describe_validation(list(e.errors()))) from None
    await plane.feedback(fb.request_id, fb.label, fb.outcome)
    return JSONResponse({"recorded": True, "request_id": fb.request_id})
