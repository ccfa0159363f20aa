"""Admin endpoints of version retention (bearer token).

POST /admin/models/{m}/versions/prune    body `PruneRequest`: retire all but the newest `keep`
                                         versions (never live, shadow, warm or rollback target)

The CLI's `versions prune` calls this, so the registry and the folders it changes are the
server's, wherever the server runs.
"""

from __future__ import annotations

import functools
from typing import Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from serving.dataplane import blocking
from serving.errors import ApiError
from serving.http.deps import Body, Control, Model, require_admin
from serving.registry import RegistryError
from serving.registry.roles import prune_report

router = APIRouter(prefix="/admin/models/{model}/versions", dependencies=[Depends(require_admin)])


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: int = Field(default=3, ge=1, description="Newest available versions to keep (the newest always stays).")
    dry_run: bool = Field(default=False, description="Say what would be pruned; change nothing.")


@router.post("/prune")
async def prune(model: Model, control: Control, body: Body) -> dict[str, Any]:
    req = PruneRequest.model_validate_json(body or b"{}")
    run = functools.partial(prune_report, control.registry, model, req.keep, dry_run=req.dry_run, actor="admin-api")
    try:
        # Registry writes wait for the lock and folders are deleted: never on the event loop.
        return await blocking(run)
    except RegistryError as e:
        raise ApiError(422, f"keep: {e}") from None
