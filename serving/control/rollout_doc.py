"""What the registry stores per rollout: policy + decide()'s status + the controller's window baseline.

The registry keeps this document as opaque JSON (`Registry.save_rollout`). Everything a restarted
controller needs lives here: the policy, the last `RolloutStatus`, and the counter snapshot the
current metrics window started from. Nothing is kept in process memory between ticks.
"""

from __future__ import annotations

import json
import logging

from pydantic import BaseModel, ConfigDict, Field

from serving.control.metrics_source import Snapshot
from serving.rollout.decide import RolloutStatus
from serving.rollout.policy import CanaryPolicy, RolloutPolicy
from serving.rollout.stats import VersionStats

log = logging.getLogger(__name__)

DEFAULT_SMOKE_INPUTS = ("I love this, it works great", "this is terrible", "it arrived on tuesday")


class RolloutDoc(BaseModel):
    """One rollout as stored in the registry (status_json of its row)."""

    model_config = ConfigDict(extra="forbid")

    rollout_id: str = Field(min_length=1)
    model: str = Field(min_length=1)
    policy: RolloutPolicy
    status: RolloutStatus
    rev: int = Field(default=0, ge=0, description="Bumped on every save; a writer that read an older rev loses.")
    created_at: float = Field(description="When the rollout was requested (before the candidate was ready).")
    ready_timeout_s: float = Field(
        default=600.0, gt=0, description="Seconds the candidate may take to deploy before the rollout aborts."
    )
    smoke_inputs: list[str] = Field(
        default_factory=lambda: list(DEFAULT_SMOKE_INPUTS),
        min_length=1,
        description="Blue-green: texts sent to the idle colour through the pinned-version endpoint.",
    )
    then_canary: CanaryPolicy | None = Field(
        default=None, description="Shadow: the canary started when the shadow verdict is 'ready'."
    )
    baseline: Snapshot | None = Field(
        default=None, description="Counters scraped when the current window started; None = window unmeasurable."
    )
    baseline_at: float | None = Field(default=None, description="status.window_started_at the baseline belongs to.")
    last_window: dict[str, VersionStats] = Field(
        default_factory=dict, description="The stats the last decide() judged, for `rollout status`."
    )


def experiment_salt(registry: object, model: str) -> str | None:
    """The sticky-hash salt of the model's active A/B test, or None (the router then uses its default).

    Read by the ingress every traffic poll, so it parses only what it needs and never raises.
    """
    try:
        active = registry.load_active_rollout(model)  # type: ignore[attr-defined]
        if active is None or active.strategy != "ab":
            return None
        salt = json.loads(active.status_json)["policy"]["salt"]
        return salt if isinstance(salt, str) and salt else None
    except Exception:  # noqa: BLE001 - a bad document must not stop routing; the default salt still works
        log.warning("could not read the A/B salt of model %s", model, exc_info=True)
        return None
