"""The traffic snapshot the controller publishes and every ingress replica routes by.

Pure: the controller reads the registry (`ModelReads`, one per model) and `next_snapshot`
turns those reads into a `Snapshot`. The revision moves only when the content changes, so an
ingress long-polling `snapshot(since_revision)` wakes up exactly when routing changed, and an
unchanged registry costs the ingress nothing.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

# Longest a snapshot long poll waits for a change before it answers with the same revision. An
# open poll is an ongoing request of the controller's replica, and Serve drains those before it
# stops a replica: the poll's length bounds how long stopping (or replacing) the controller takes.
# An idle ingress replica makes one call per LONG_POLL_S (about 1 ms of CPU each).
LONG_POLL_S = 3.0


class ModelReads(BaseModel):
    """What the controller read from the registry for one model (the snapshot's input)."""

    model_config = ConfigDict(frozen=True)

    weights: dict[str, float] = Field(default_factory=dict, description="Traffic percent per version.")
    shadow_version: str | None = Field(default=None, description="Version that gets copies, if any.")
    shadow_share: float = Field(default=0.0, ge=0, le=100, description="Percent of requests copied to it.")
    experiment_salt: str | None = Field(default=None, description="Salt of the model's active A/B test.")
    versions: dict[str, list[str]] = Field(
        default_factory=dict, description="Available version -> its card's label names, in output order.")


class ModelTraffic(BaseModel):
    """Routing state of one model, as the ingress needs it."""

    model_config = ConfigDict(frozen=True)

    weights: dict[str, float] = Field(description="Versions with traffic > 0 and their percent.")
    shadow_version: str | None = Field(default=None, description="Shadow version, None without a shadow.")
    shadow_share: float = Field(default=0.0, description="Percent of requests copied to the shadow.")
    salt: str = Field(description="Sticky-routing salt: the A/B test's, else the model name.")
    versions: list[str] = Field(description="Deployable versions, oldest first (pinned requests may use them).")
    labels: dict[str, list[str]] = Field(description="Label names per deployable version.")


class Snapshot(BaseModel):
    """Everything the data plane routes by, with a revision that moves on every change."""

    model_config = ConfigDict(frozen=True)

    revision: int = Field(ge=0, description="0 = nothing published yet; +1 on every change.")
    models: dict[str, ModelTraffic] = Field(default_factory=dict, description="Model -> its routing state.")


def _num(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


def model_traffic(model: str, reads: ModelReads) -> ModelTraffic:
    """One model's routing state. A shadow with no share, or equal to a live version, is no
    shadow (the request already goes there); weights of 0 are dropped (they route nothing)."""
    weights = {v: w for v, w in reads.weights.items() if w > 0}
    shadow = reads.shadow_version if reads.shadow_version and reads.shadow_share > 0 else None
    return ModelTraffic(
        weights=weights,
        shadow_version=shadow,
        shadow_share=reads.shadow_share if shadow else 0.0,
        salt=reads.experiment_salt or model,
        versions=sorted(reads.versions, key=_num),
        labels={v: list(reads.versions[v]) for v in sorted(reads.versions, key=_num)},
    )


def next_snapshot(previous: Snapshot | None, reads: Mapping[str, ModelReads], first_revision: int = 1) -> Snapshot:
    """The snapshot for `reads`: `previous` itself when nothing changed, else the next revision.

    A controller's first publish is `first_revision`: the controller passes its start time in
    milliseconds, so a restarted controller never republishes a revision an ingress already holds
    from its predecessor (the long poll would then wait for a change instead of answering)."""
    models = {m: model_traffic(m, reads[m]) for m in sorted(reads)}
    if previous is not None and previous.revision and previous.models == models:
        return previous
    revision = previous.revision + 1 if previous is not None and previous.revision else first_revision
    return Snapshot(revision=revision, models=models)
