"""Admin endpoints of version retention (bearer token), mounted on the ingress via serving.routers.

POST /admin/models/{m}/versions/prune    body `PruneRequest`: retire all but the newest `keep`
                                         versions (never live, shadow, warm or rollback target)

The CLI's `versions prune` calls this, so the files and the registry it changes are the
server's, wherever the server runs.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from serving.errors import ApiError, describe_validation
from serving.registry import RegistryError
from serving.registry.roles import prune_report

router = APIRouter()


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: int = Field(default=3, ge=1, description="Newest available versions to keep (the newest always stays).")
    dry_run: bool = Field(default=False, description="Say what would be pruned; change nothing.")


@router.post("/admin/models/{model}/versions/prune")
async def prune(model: str, request: Request) -> dict[str, Any]:
    ingress = request.app.state.ingress
    ingress._admin(request)
    ingress._known_model(model)
    try:
        body = PruneRequest.model_validate_json(await ingress._body(request) or b"{}")
    except ValidationError as e:
        raise ApiError(422, describe_validation(list(e.errors()))) from None
    run = functools.partial(prune_report, ingress.view.registry, model, body.keep, dry_run=body.dry_run,
                            actor="admin-api")
    try:
        # SQLite writes wait for the lock and folders are deleted: never on the event loop.
        return await asyncio.get_running_loop().run_in_executor(None, run)
    except RegistryError as e:
        raise ApiError(422, f"keep: {e}") from None
