"""Starting a rollout: validate the request, derive gates from the cards, store the pending document.

The candidate is asked to be kept warm (deployed at 0 %) in the same transaction; the controller
calls the first decide() only once the candidate answers ready.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictStr

from distilserve.core.names import VERSION_PATTERN
from serving.control.rollout_doc import RolloutDoc
from serving.registry import EventRecord, Registry
from serving.registry.traffic import full_version
from serving.rollout.decide import start_status
from serving.rollout.policy import CanaryPolicy, RolloutPolicy, gates_from_card, parse_policy

_GATED = ("canary", "shadow")


class RolloutRefused(Exception):
    """The rollout request is valid but the model's state does not allow it (HTTP 409)."""


class StartRequest(BaseModel):
    """Body of POST /admin/models/{model}/rollouts."""

    model_config = ConfigDict(extra="forbid")

    version: StrictStr = Field(pattern=VERSION_PATTERN, description="The candidate version.")
    policy: dict[str, Any] = Field(
        description="A rollout policy, e.g. {'strategy': 'canary', 'step_weights': [1, 5, 25, 50, 100]}; "
        "canary/shadow gates not given are derived from the cards."
    )
    gate_overrides: dict[str, Any] = Field(
        default_factory=dict, description="CanaryGates fields that win over the card-derived gates."
    )
    then_canary: dict[str, Any] | None = Field(
        default=None, description="Shadow only: canary policy started when the shadow says 'ready'."
    )
    smoke_inputs: list[StrictStr] | None = Field(
        default=None, min_length=1, description="Blue-green smoke texts (default: a few fixed ones)."
    )
    ready_timeout_s: float = Field(default=600.0, gt=0, description="Deploy deadline of the candidate.")


def resolve_policy(
    registry: Registry,
    model: str,
    stable: str,
    candidate: str,
    raw: dict[str, Any],
    overrides: dict[str, Any],
    rollout_id: str,
) -> RolloutPolicy:
    """`raw` validated, with canary/shadow gates from the cards (+ overrides) when not given.

    Raises:
        pydantic.ValidationError: a bad policy or gate field (named).
        RolloutRefused: a version is not registered, or a card cannot give gates.
    """
    data = dict(raw)
    strategy = data.get("strategy")
    if strategy == "ab" and not data.get("salt"):
        # A fresh salt per experiment: users are reshuffled on purpose, not inherited from the last test.
        data["salt"] = f"{model}:{stable}-vs-{candidate}:{rollout_id}"
    if strategy in _GATED:
        if "gates" in data:
            data["gates"] = {**dict(data["gates"]), **overrides}
        else:
            cards = [registry.get_version(model, v) for v in (candidate, stable)]
            if cards[0] is None or cards[1] is None:
                raise RolloutRefused(f"version {candidate!r} or {stable!r} of {model!r} is not registered")
            base = dict(overrides)
            # Shadow copies carry no labels: its accuracy gate is off unless asked for.
            if strategy == "shadow":
                base.setdefault("max_accuracy_drop", None)
            try:
                data["gates"] = gates_from_card(cards[0].card, cards[1].card, overrides=base).model_dump()
            except ValueError as e:
                raise RolloutRefused(f"cannot derive gates from the cards ({e}); pass policy.gates") from None
    elif overrides:
        raise RolloutRefused(f"gate_overrides apply to canary and shadow rollouts, not {strategy!r}")
    return parse_policy(data)


def start_rollout(
    registry: Registry, model: str, request: StartRequest, now: float, rollout_id: str | None = None
) -> tuple[RolloutDoc, list[EventRecord]]:
    """Store a pending rollout of `request.version` against the version taking 100 % now.

    Raises:
        RolloutRefused: traffic is split, the candidate is the stable version or cannot serve,
            or another rollout is active.
        pydantic.ValidationError: a bad policy (fields named).
    """
    rollout_id = rollout_id or f"{model}-{request.version}-{uuid.uuid4().hex[:8]}"
    traffic = registry.get_traffic(model)
    stable = full_version(traffic)
    if stable is None:
        raise RolloutRefused(
            f"model {model!r} traffic is split {traffic}; a rollout starts from one version at 100 % "
            "(finish or roll back first)"
        )
    candidate = request.version
    if candidate == stable:
        raise RolloutRefused(f"version {candidate!r} already takes 100 % of {model!r}")
    record = registry.get_version(model, candidate)
    if record is None or record.status != "available":
        raise RolloutRefused(f"version {candidate!r} of {model!r} is not registered or was pruned")
    policy = resolve_policy(
        registry, model, stable, candidate, request.policy, request.gate_overrides, rollout_id
    )
    then = None
    if request.then_canary is not None:
        if policy.strategy != "shadow":
            raise RolloutRefused("then_canary is for shadow rollouts only")
        then = resolve_policy(
            registry,
            model,
            stable,
            candidate,
            {"strategy": "canary", **request.then_canary},
            request.gate_overrides,
            rollout_id,
        )
        assert isinstance(then, CanaryPolicy)
    doc = RolloutDoc(
        rollout_id=rollout_id,
        model=model,
        policy=policy,
        status=start_status(policy, stable, candidate),
        created_at=now,
        ready_timeout_s=request.ready_timeout_s,
        then_canary=then,
        **({"smoke_inputs": request.smoke_inputs} if request.smoke_inputs else {}),
    )
    return doc, save_new(registry, doc)


def save_new(registry: Registry, doc: RolloutDoc) -> list[EventRecord]:
    """Store a new pending rollout, keep its candidate warm, record 'rollout.started' (one transaction).

    Raises:
        RolloutRefused: another rollout of the model is active.
    """
    from serving.registry import RolloutConflictError

    status = doc.status
    try:
        with registry.transaction():
            registry.save_rollout(doc.model, doc.rollout_id, doc.policy.strategy, doc.model_dump_json())
            registry.set_warm(doc.model, status.candidate_version, True, reason=f"rollout {doc.rollout_id}")
            event = registry.record_event(
                doc.model,
                "rollout.started",
                f"{doc.policy.strategy} of {status.candidate_version} against {status.stable_version}",
                {
                    "strategy": doc.policy.strategy,
                    "stable": status.stable_version,
                    "candidate": status.candidate_version,
                    "policy": doc.policy.model_dump(mode="json"),
                },
                rollout_id=doc.rollout_id,
            )
    except RolloutConflictError as e:
        raise RolloutRefused(str(e)) from None
    return [event]
