"""Request bodies of the JSON API (/v1) and the admin API. Strict: no silent coercion."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, model_validator

from distilserve.core.names import MODEL_PATTERN, VERSION_PATTERN


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    model: StrictStr = Field(default="sentiment", pattern=MODEL_PATTERN, description="Model name.")
    inputs: list[StrictStr] = Field(description="Texts to classify.")
    user_id: StrictStr | None = Field(default=None, min_length=1, max_length=128,
                                      description="Makes A/B routing sticky for this user.")
    version: StrictStr | None = Field(default=None, pattern=VERSION_PATTERN, description="Pin a version.")


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    request_id: StrictStr = Field(min_length=1, max_length=64, description="From a /v1/predict response.")
    label: StrictStr | None = Field(default=None, min_length=1, max_length=64, description="The true label.")
    outcome: StrictInt | None = Field(default=None, ge=0, le=1, description="Business outcome, 0 or 1.")

    @model_validator(mode="after")
    def _one_of(self) -> FeedbackRequest:
        if self.label is None and self.outcome is None:
            raise ValueError("give 'label' or 'outcome' (or both)")
        return self


class TrafficRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    weights: dict[StrictStr, float] = Field(description="{version: percent}, summing to 100.")
    reason: StrictStr = Field(default="set by admin", min_length=1, max_length=500)


class RollbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    to_version: StrictStr | None = Field(default=None, pattern=VERSION_PATTERN,
                                         description="Default: the previously live version.")
    reason: StrictStr = Field(default="rollback", min_length=1, max_length=500)


class ShadowRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: StrictStr | None = Field(pattern=VERSION_PATTERN, description="None clears the shadow.")
    share: float = Field(default=100.0, gt=0, le=100, description="Percent of requests copied.")



class DeployRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    version: StrictStr = Field(pattern=VERSION_PATTERN, description="Version to keep deployed (warm).")
    warm: bool = Field(default=True, description="False releases it (the runner scales it down).")
    reason: StrictStr = Field(default="deploy from admin API", min_length=1, max_length=500)


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keep: StrictInt = Field(default=3, ge=1, description="Newest available versions to keep (the newest always stays).")
    dry_run: bool = Field(default=False, description="Say what would be pruned; change nothing.")
