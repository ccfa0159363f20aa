"""What the registry hands back: immutable pydantic records and small named tuples."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from distilserve.core.card import ModelCard
from serving.registry.traffic import primary_of

VersionStatus = Literal["available", "pruned"]


class VersionRecord(BaseModel):
    """One registered version of one model, with its card (and so its lineage)."""

    model_config = ConfigDict(frozen=True)

    model: str = Field(description="Model name, e.g. 'sentiment'.")
    version: str = Field(description="Version number as a string, e.g. '3'.")
    path: str = Field(description="Absolute path of the version folder, <model dir>/<version>.")
    card: ModelCard = Field(description="The version's card.json, lineage included.")
    registered_at: float = Field(description="Unix time of the first registration.")
    status: VersionStatus = Field(description="'available' can take traffic; 'pruned' never again.")


class DeploymentRecord(BaseModel):
    """One change of a model's traffic table: what became live, when, and why."""

    model_config = ConfigDict(frozen=True)

    id: int = Field(description="Monotonic id; higher is newer.")
    model: str
    ts: float = Field(description="Unix time of the change.")
    traffic: dict[str, float] = Field(description="Percent of requests per version after the change.")
    previous: dict[str, float] = Field(description="The traffic table it replaced ({} for the first).")
    reason: str = Field(description="Why it changed, e.g. 'canary step 2' or 'rollback: p99 above SLO'.")
    actor: str = Field(description="Who changed it: 'cli', 'controller', 'api', ...")

    @property
    def primary(self) -> str | None:
        """The version with the largest share (see `traffic.primary_of`)."""
        return primary_of(self.traffic)


class ShadowRecord(BaseModel):
    """The version receiving a copy of `share` percent of requests; its answers are discarded."""

    model_config = ConfigDict(frozen=True)

    model: str
    version: str
    share: float = Field(gt=0, le=100, description="Percent of requests copied to the shadow.")
    updated_at: float


class EventRecord(BaseModel):
    """Something a rollout (or an operator) did or saw, kept for the audit trail."""

    model_config = ConfigDict(frozen=True)

    id: int
    model: str
    rollout_id: str | None
    ts: float
    kind: str = Field(description="Short dotted kind, e.g. 'rollout.step' or 'prune.refused'.")
    message: str
    data: dict[str, Any] = Field(default_factory=dict)


class ActiveRollout(NamedTuple):
    rollout_id: str
    strategy: str
    status_json: str


class PredictionRow(NamedTuple):
    """One served prediction; the column order `record_predictions` expects."""

    request_id: str
    model: str
    version: str
    label_predicted: str
    user_id: str | None
    ts: float


class FeedbackStats(NamedTuple):
    labelled: int
    correct: int
    outcome_trials: int
    outcome_successes: int
