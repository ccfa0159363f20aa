"""Admin API (bearer token): traffic, deploy, rollback, rollouts.

POST /admin/models/{m}/versions/prune          retire old versions (body: `PruneRequest`)
POST /admin/models/{m}/rollouts                 start one (body: `StartRequest`)
POST /admin/models/{m}/rollouts/{command}       promote | rollback | pause | resume | abort | promote-winner
GET  /admin/models/{m}/rollouts/status          traffic split, per-version metrics, decision state, events
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from serving import api_models
from serving.control.rollout_start import StartRequest
from serving.http.deps import Body, Control, Model, require_admin

router = APIRouter(prefix="/admin/models/{model}", dependencies=[Depends(require_admin)])


@router.get("")
async def status(model: Model, control: Control) -> dict:
    return await control.status(model)


@router.post("/traffic")
async def traffic(model: Model, control: Control, body: Body) -> dict:
    req = api_models.TrafficRequest.model_validate_json(body)
    return await control.set_traffic(model, req.weights, req.reason)


@router.post("/deploy")
async def deploy(model: Model, control: Control, body: Body) -> dict:
    """Keep a version deployed without traffic; the serve runner deploys it within a second."""
    req = api_models.DeployRequest.model_validate_json(body)
    return await control.deploy(model, req.version, req.warm, req.reason)


@router.post("/rollback")
async def rollback(model: Model, control: Control, body: Body) -> dict:
    req = api_models.RollbackRequest.model_validate_json(body or b"{}")
    return await control.rollback(model, req.to_version, req.reason)


@router.post("/versions/prune")
async def prune(model: Model, control: Control, body: Body) -> dict:
    """Retire all but the newest `keep` versions (never live, shadow, warm or rollback target)."""
    req = api_models.PruneRequest.model_validate_json(body or b"{}")
    return await control.prune(model, req.keep, req.dry_run)


@router.post("/rollouts")
async def start_rollout(model: Model, control: Control, body: Body) -> dict:
    return await control.start_rollout(model, StartRequest.model_validate_json(body))


@router.get("/rollouts/status")
async def rollout_status(model: Model, control: Control) -> dict:
    return await control.rollout_status(model)


@router.post("/rollouts/{command}")
async def rollout_command(model: Model, command: str, control: Control) -> dict:
    return await control.rollout_command(model, command)
