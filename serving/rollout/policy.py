"""Rollout policies: pydantic configs, one per strategy, joined in the `RolloutPolicy` union.

The same models validate YAML files, CLI flags and admin API bodies (`parse_policy`). Every
cross-field check quotes the values it rejects and shows a valid example.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from distilserve.core.card import ModelCard

DEFAULT_STEP_WEIGHTS = (1.0, 5.0, 25.0, 50.0, 100.0)
STEP_EXAMPLE = "[1, 5, 25, 50, 100]"


class _Config(BaseModel):
    # frozen: decide() must not be able to edit its inputs in place.
    model_config = ConfigDict(extra="forbid", frozen=True)


class CanaryGates(_Config):
    """Thresholds a canary window must meet against the stable version to advance.

    A window with fewer than `min_requests` (or `min_labels`, when the accuracy gate is on) on
    either version, or with a missing/NaN p99, is inconclusive: it never passes.
    """

    min_requests: int = Field(default=100, ge=1, description="Requests per version for a conclusive window.")
    min_labels: int = Field(
        default=50, ge=1, description="Feedback labels per version for the accuracy gate."
    )
    max_error_rate_increase: float = Field(
        default=0.01,
        ge=0,
        le=1,
        description="Max canary error rate minus stable error rate (0.01 = 1 point).",
    )
    max_p99_ratio: float | None = Field(
        default=1.5, ge=1, description="Max canary p99 / stable p99; None turns the ratio gate off."
    )
    max_p99_ms: float | None = Field(
        default=None, gt=0, description="Max canary p99 in milliseconds; None turns the absolute gate off."
    )
    max_accuracy_drop: float | None = Field(
        default=0.02,
        ge=0,
        le=1,
        description="Max stable accuracy minus canary accuracy on labelled feedback; None turns it off.",
    )

    @model_validator(mode="after")
    def _one_latency_gate(self) -> CanaryGates:
        # Latency is the reason a distilled student exists: a canary with no latency gate at all
        # is almost always a config mistake, not a choice.
        if self.max_p99_ratio is None and self.max_p99_ms is None:
            raise ValueError(
                f"set max_p99_ratio or max_p99_ms (got max_p99_ratio={self.max_p99_ratio}, "
                f"max_p99_ms={self.max_p99_ms}), e.g. max_p99_ratio=1.5"
            )
        return self


class CanaryPolicy(_Config):
    """Shift traffic to the candidate in steps, checking `gates` at every step interval.

    The windows of one step add up: each judgement is on everything the step has seen since its
    evidence began, so a 1% canary on little traffic waits for `gates.min_requests` instead of
    failing three thin windows. Only a failed gate or `max_step_s` ends a step in rollback.
    """

    strategy: Literal["canary"] = "canary"
    step_weights: list[float] = Field(
        default_factory=lambda: list(DEFAULT_STEP_WEIGHTS),
        min_length=2,
        description=f"Candidate traffic percent per step, strictly increasing, ending at 100, e.g. {STEP_EXAMPLE}.",
    )
    step_interval_s: float = Field(
        default=300.0, gt=0, description="Seconds of traffic behind each analysis window."
    )
    gates: CanaryGates = Field(default_factory=CanaryGates, description="What a window must meet to advance.")
    max_step_s: float = Field(
        default=3600.0,
        gt=0,
        description=(
            "Seconds one step may stay inconclusive (too few requests or labels, NaN p99) while its "
            "windows add up; then it rolls back. At least step_interval_s; size it for the candidate's "
            "traffic: 1% of 50 req/s needs 200 s for 100 requests."
        ),
    )
    max_inconclusive: int = Field(
        default=3,
        ge=1,
        description=(
            "Consecutive windows with no metrics at all (scrape failed, a version absent) before "
            "rolling back: a blind controller stops, as Argo's consecutiveErrorLimit. Too little "
            "data is not counted here; it extends the step up to max_step_s."
        ),
    )
    max_failures: int = Field(
        default=1, ge=1, description="Consecutive failed judgements (each on fresh evidence) before rolling back."
    )

    @model_validator(mode="after")
    def _steps_increase_to_100(self) -> CanaryPolicy:
        steps = self.step_weights
        if any(not 0 < w <= 100 for w in steps):
            raise ValueError(f"step_weights must each be in (0, 100], got {steps}; e.g. {STEP_EXAMPLE}")
        if any(b <= a for a, b in zip(steps, steps[1:], strict=False)):
            raise ValueError(f"step_weights must be strictly increasing, got {steps}; e.g. {STEP_EXAMPLE}")
        if steps[-1] != 100:
            raise ValueError(
                f"step_weights must end at 100, got {steps} (last {steps[-1]}); e.g. {STEP_EXAMPLE}"
            )
        if self.max_step_s < self.step_interval_s:
            raise ValueError(
                f"max_step_s ({self.max_step_s}) must be >= step_interval_s ({self.step_interval_s}): a step "
                f"must last at least one analysis window, e.g. max_step_s={max(3600.0, 12 * self.step_interval_s)}"
            )
        return self


class BlueGreenPolicy(_Config):
    """Smoke-test the idle colour, switch all traffic at once, keep the old colour warm, scale it down."""

    strategy: Literal["blue_green"] = "blue_green"
    smoke_timeout_s: float = Field(
        default=600.0, gt=0, description="Seconds to wait for a smoke result; none by then rolls back."
    )
    rollback_window_s: float = Field(
        default=900.0,
        ge=0,
        description="Seconds the old colour stays warm after the switch before scale-down.",
    )


class ABPolicy(_Config):
    """Sticky A/B split (stable = arm A, candidate = arm B) judged by a mixture SPRT on conversions."""

    strategy: Literal["ab"] = "ab"
    salt: str = Field(
        min_length=1, description="Experiment salt for sticky hashing; a new salt reshuffles users."
    )
    candidate_percent: float = Field(
        default=50.0, gt=0, lt=100, description="Traffic percent on the candidate arm."
    )
    alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="False-positive rate of the always-valid test."
    )
    tau: float = Field(
        default=0.05,
        gt=0,
        le=1,
        description="Std of the normal mixing prior on the difference of conversion rates (expected effect size).",
    )
    min_trials: int = Field(
        default=100,
        ge=1,
        description="Outcomes per arm before the test is read (the normal approximation needs some).",
    )
    max_duration_s: float | None = Field(
        default=None,
        gt=0,
        description="Seconds without a winner before keeping stable; None runs until significant.",
    )


class ShadowPolicy(_Config):
    """Copy a share of live traffic to the candidate; its answers are compared, never returned."""

    strategy: Literal["shadow"] = "shadow"
    sample_percent: float = Field(default=10.0, gt=0, le=100, description="Percent of live requests copied.")
    min_samples: int = Field(default=500, ge=1, description="Compared requests before a verdict.")
    min_agreement: float = Field(
        default=0.95,
        ge=0,
        le=1,
        description="Share of copied requests where the candidate's label matches stable's.",
    )
    gates: CanaryGates = Field(
        default_factory=lambda: CanaryGates(max_accuracy_drop=None),
        description="Error-rate and latency gates on the cumulative shadow traffic (labels rarely exist here).",
    )
    max_duration_s: float | None = Field(
        default=None, gt=0, description="Seconds without a verdict before giving up (rollback); None waits."
    )


RolloutPolicy = Annotated[
    CanaryPolicy | BlueGreenPolicy | ABPolicy | ShadowPolicy, Field(discriminator="strategy")
]
_POLICY_ADAPTER: TypeAdapter[RolloutPolicy] = TypeAdapter(RolloutPolicy)


def parse_policy(data: Mapping[str, Any] | str) -> RolloutPolicy:
    """Validate a policy from a dict (YAML, CLI, API body) or a JSON string.

    Raises:
        pydantic.ValidationError: naming the field, e.g. an unknown `strategy` lists the valid tags.
    """
    if isinstance(data, str):
        return _POLICY_ADAPTER.validate_json(data)
    return _POLICY_ADAPTER.validate_python(data)


def gates_from_card(
    card: ModelCard,
    stable_card: ModelCard | None = None,
    *,
    latency_headroom: float = 1.5,
    accuracy_headroom: float = 0.02,
    overhead_ms: float = 20.0,
    overrides: Mapping[str, Any] | None = None,
) -> CanaryGates:
    """Default canary gates from what the cards measured offline, with headroom; `overrides` win.

    Latency: with a stable card, the ratio gate allows the measured batch-1 p99 ratio (at least 1)
    times `latency_headroom`. Without one, an absolute gate: the candidate's batch-1 p99 times
    `latency_headroom` plus `overhead_ms`, because the card times one forward pass while live p99
    adds the proxy and deployment hops (8 ms + 2.5-4 ms per hop measured here).
    Accuracy: the offline gap (stable minus candidate, 0 if the candidate is better) plus
    `accuracy_headroom`; a distilled student is *expected* to lose that much.

    Raises:
        ValueError: a card lacks batch-1 latency, the cards are of different models or labels,
            or a headroom is out of range.
    """
    if latency_headroom < 1 or accuracy_headroom < 0 or overhead_ms < 0:
        raise ValueError(
            f"need latency_headroom >= 1, accuracy_headroom >= 0, overhead_ms >= 0; got "
            f"{latency_headroom}, {accuracy_headroom}, {overhead_ms} (e.g. 1.5, 0.02, 20.0)"
        )
    p99 = _batch1_p99(card)
    derived: dict[str, Any] = {}
    gap = 0.0
    if stable_card is not None:
        if (stable_card.model, stable_card.labels) != (card.model, card.labels):
            raise ValueError(
                f"cards must be of the same model and labels: candidate {card.model} {card.labels} vs "
                f"stable {stable_card.model} {stable_card.labels}"
            )
        stable_p99 = _batch1_p99(stable_card)
        gap = stable_card.accuracy - card.accuracy
        if stable_p99 > 0:
            derived["max_p99_ratio"] = max(p99 / stable_p99, 1.0) * latency_headroom
            derived["max_p99_ms"] = None
    if "max_p99_ratio" not in derived:
        derived["max_p99_ratio"] = None
        derived["max_p99_ms"] = p99 * latency_headroom + overhead_ms
    derived["max_accuracy_drop"] = min(max(gap, 0.0) + accuracy_headroom, 1.0)
    return CanaryGates.model_validate({**derived, **dict(overrides or {})})


def _batch1_p99(card: ModelCard) -> float:
    stats = card.latency_at(1)
    if stats is None:
        measured = [s.batch_size for s in card.latency]
        raise ValueError(
            f"card {card.model} v{card.version} has no batch-1 latency (measured batch sizes {measured}); "
            "re-run distill.evaluate with batch size 1"
        )
    return stats.p99_ms
