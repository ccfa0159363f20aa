"""What the operator page reads: one `ModelReading` per model, from an injected `UiSource`.

The router never opens the registry itself. Today the ingress's registry view is adapted by
`RegistrySource`; a control plane that hands the ingress a snapshot instead provides its own
`UiSource` as `app.state.ui_source`. Readings are plain records, so `state.py` stays pure.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from serving.control.admin import rollout_status
from serving.control.rollout_doc import RolloutDoc
from serving.registry import DeploymentRecord, EventRecord, ShadowRecord, VersionRecord

HISTORY_LIMIT = 50  # traffic changes shown (newest first)
RECENT_EVENTS = 30  # model events shown besides the rollout's own


class ModelReading(BaseModel):
    """Everything the page shows of one model, as read at one moment."""

    model_config = ConfigDict(frozen=True)

    model: str
    versions: list[VersionRecord] = Field(description="Every version, pruned ones included, numeric order.")
    traffic: dict[str, float] = Field(description="The traffic table in force, {version: percent}.")
    history: list[DeploymentRecord] = Field(description="Traffic changes, newest first.")
    shadow: ShadowRecord | None = None
    rollback_target: str | None = None
    warm: list[str] = Field(default_factory=list, description="Versions kept deployed without traffic.")
    rollout: RolloutDoc | None = Field(default=None, description="The active rollout, if any.")
    rollout_id: str | None = Field(default=None, description="The active rollout, else the latest one.")
    final: str | None = Field(default=None, description="Final phase of that rollout when it is over.")
    events: list[EventRecord] = Field(default_factory=list, description="Events of that rollout, oldest first.")
    recent_events: list[EventRecord] = Field(default_factory=list, description="Latest model events, newest first.")


class UiSource(Protocol):
    """The reader the page depends on: blocking calls, run off the event loop by the router."""

    def models(self) -> list[str]: ...

    def read(self, model: str) -> ModelReading: ...


class RegistrySource:
    """A `UiSource` over a `Registry` (anything with its read methods) and the served models."""

    def __init__(self, registry: Any, models: list[str]) -> None:
        self.registry, self._models = registry, list(models)

    def models(self) -> list[str]:
        return list(self._models)

    def read(self, model: str) -> ModelReading:
        reg = self.registry
        # The rollout part (active, else the latest, with its events) as `rollout status` reads it.
        ro = rollout_status(reg, model, None)
        return ModelReading(
            model=model,
            versions=reg.list_versions(model),
            traffic=ro["traffic"],
            history=reg.history(model, limit=HISTORY_LIMIT),
            shadow=ro["shadow"],
            rollback_target=reg.rollback_target(model),
            warm=reg.warm_versions(model),
            rollout=ro["rollout"],
            rollout_id=ro["rollout_id"],
            # The phase the rollout ended in ("rolled_back", ...), from its own finished event.
            final=next((e["data"].get("phase") for e in ro["events"] if e["kind"] == "rollout.finished"), None),
            events=ro["events"],
            recent_events=reg.events(model, limit=RECENT_EVENTS),
        )
