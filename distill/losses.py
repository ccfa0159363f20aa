"""Distillation losses as a registry: a typed ``kind`` resolves each config to its module.

Kinds: ``kd_kl`` (soft targets, Hinton), ``ce`` (hard labels), ``hidden_mse`` / ``hidden_cosine``
(hidden-state transfer over a layer map, with a learned projection when widths differ) and
``attention`` (attention-map transfer). :class:`DistillLoss` sums the weighted terms.

Layer indices in a ``layer_map`` are 0-based *encoder layer* indices, the same numbering as
``StudentSpec.layers``: index ``i`` is the output of encoder layer ``i`` (``hidden_states[i + 1]``,
``attentions[i]``); negative indices count from the last layer. The embedding output is not
addressable. A student built from teacher layers ``[0, 5]`` therefore maps as ``[[0, 0], [5, 1]]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Protocol

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator
from torch import nn


class StrictModel(BaseModel):
    """Base for every distill config: unknown keys are an error that lists the valid keys."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        # pydantic's own extra="forbid" message names the bad key but not the valid ones.
        if isinstance(data, Mapping):
            unknown = sorted(str(k) for k in data if k not in cls.model_fields)
            if unknown:
                raise ValueError(
                    f"unknown key(s) {unknown} in {cls.__name__}; valid keys: {sorted(cls.model_fields)}"
                )
        return data


class _Weighted(StrictModel):
    weight: float = Field(1.0, ge=0.0, description="Multiplier of this term in the total loss.")


class KDKLConfig(_Weighted):
    kind: Literal["kd_kl"] = Field("kd_kl", description="Soft-target KL(teacher || student) times T^2.")
    temperature: float = Field(2.0, gt=0.0, description="Softmax temperature T applied to both logits.")


class CEConfig(_Weighted):
    kind: Literal["ce"] = Field("ce", description="Hard-label cross-entropy; label -100 is ignored.")


LayerPair = tuple[int, int]


class LayerMappedConfig(_Weighted):
    layer_map: list[LayerPair] = Field(
        ...,
        min_length=1,
        description="[teacher_layer, student_layer] pairs of 0-based encoder layers (negative: from the end).",
    )


class HiddenMSEConfig(LayerMappedConfig):
    kind: Literal["hidden_mse"] = Field("hidden_mse", description="MSE between mapped hidden states.")


class HiddenCosineConfig(LayerMappedConfig):
    kind: Literal["hidden_cosine"] = Field(
        "hidden_cosine", description="1 - cosine similarity between mapped hidden states."
    )


class AttentionConfig(LayerMappedConfig):
    kind: Literal["attention"] = Field(
        "attention", description="MSE between attention probabilities of mapped layers."
    )


LossConfig = Annotated[
    KDKLConfig | CEConfig | HiddenMSEConfig | HiddenCosineConfig | AttentionConfig,
    Field(discriminator="kind"),
]
LOSS_KINDS: tuple[str, ...] = ("kd_kl", "ce", "hidden_mse", "hidden_cosine", "attention")
_LOSS_ADAPTER: TypeAdapter[Any] = TypeAdapter(LossConfig)


def parse_loss_config(data: Mapping[str, Any] | BaseModel) -> LossConfig:
    """Resolve a mapping such as ``{"kind": "kd_kl", "temperature": 2}`` to its typed config.

    An unknown ``kind`` raises a ``pydantic.ValidationError`` listing the valid kinds.
    """
    if isinstance(data, BaseModel):
        data = data.model_dump()
    return _LOSS_ADAPTER.validate_python(data)


class _SizedConfig(Protocol):
    hidden_size: int
    num_hidden_layers: int


class _Outputs(Protocol):
    logits: torch.Tensor
    hidden_states: tuple[torch.Tensor, ...] | None
    attentions: tuple[torch.Tensor, ...] | None


def _resolve_layer(idx: int, n_layers: int, side: str, kind: str) -> int:
    if not -n_layers <= idx < n_layers:
        raise ValueError(
            f"{kind}: {side} layer {idx} out of range for a model with {n_layers} layers "
            f"(valid: 0..{n_layers - 1} or -{n_layers}..-1)"
        )
    return idx % n_layers


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over the positions where ``mask`` (broadcastable, 0/1) is 1."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype).expand_as(values)
    # clamp: an all-padding batch gives 0 rather than 0/0 = NaN.
    return (values * mask).sum() / mask.sum().clamp_min(1.0)


class KDKLLoss(nn.Module):
    """``T^2 * KL(softmax(t/T) || softmax(s/T))`` with ``batchmean`` reduction (Hinton et al.)."""

    def __init__(self, cfg: KDKLConfig) -> None:
        super().__init__()
        self.temperature = cfg.temperature

    def forward(self, student: _Outputs, teacher: _Outputs, labels: torch.Tensor | None,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        t = self.temperature
        log_p_s = F.log_softmax(student.logits / t, dim=-1)
        log_p_t = F.log_softmax(teacher.logits.detach() / t, dim=-1)
        # T^2 keeps the gradient scale comparable to CE as T changes.
        return F.kl_div(log_p_s, log_p_t, reduction="batchmean", log_target=True) * (t * t)


class CELoss(nn.Module):
    """Cross-entropy on hard labels; rows labelled -100 (or ``labels=None``) contribute nothing."""

    def __init__(self, cfg: CEConfig) -> None:
        super().__init__()

    def forward(self, student: _Outputs, teacher: _Outputs, labels: torch.Tensor | None,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        logits = student.logits
        if labels is None or not bool((labels != -100).any()):
            # A fully unlabeled (transfer-set) batch: F.cross_entropy would return NaN (0/0).
            return logits.sum() * 0.0
        return F.cross_entropy(logits, labels.to(logits.device).long(), ignore_index=-100)


def _pairs(cfg: LayerMappedConfig, student_config: _SizedConfig | None,
           teacher_config: _SizedConfig | None) -> list[LayerPair]:
    if student_config is None or teacher_config is None:
        raise ValueError(
            f"{cfg.kind} needs the student and teacher configs (hidden_size, num_hidden_layers): "
            f"DistillLoss(losses, student_config=student.config, teacher_config=teacher.config)"
        )
    return [
        (_resolve_layer(t, teacher_config.num_hidden_layers, "teacher", cfg.kind),
         _resolve_layer(s, student_config.num_hidden_layers, "student", cfg.kind))
        for t, s in cfg.layer_map
    ]


def _get(outputs: _Outputs, field: str, kind: str, flag: str) -> tuple[torch.Tensor, ...]:
    value = getattr(outputs, field, None)
    if not value:
        hint = " and attn_implementation='eager'" if field == "attentions" else ""
        raise ValueError(f"{kind} needs outputs.{field}: call the model with {flag}=True{hint}")
    return value


class _HiddenLoss(nn.Module):
    """Hidden-state transfer; a per-pair Linear maps student width to teacher width if they differ."""

    def __init__(self, cfg: HiddenMSEConfig | HiddenCosineConfig, student_config: _SizedConfig | None,
                 teacher_config: _SizedConfig | None) -> None:
        super().__init__()
        self.kind = cfg.kind
        self.pairs = _pairs(cfg, student_config, teacher_config)
        assert student_config is not None and teacher_config is not None
        s_dim, t_dim = student_config.hidden_size, teacher_config.hidden_size
        self.projections = nn.ModuleList(
            nn.Linear(s_dim, t_dim) if s_dim != t_dim else nn.Identity() for _ in self.pairs
        )

    def _per_token(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, student: _Outputs, teacher: _Outputs, labels: torch.Tensor | None,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        s_hidden = _get(student, "hidden_states", self.kind, "output_hidden_states")
        t_hidden = _get(teacher, "hidden_states", self.kind, "output_hidden_states")
        mask = None if attention_mask is None else attention_mask[..., None]  # [B, L, 1]
        terms = [
            _masked_mean(self._per_token(proj(s_hidden[s + 1]), t_hidden[t + 1].detach()), mask)
            for (t, s), proj in zip(self.pairs, self.projections, strict=True)
        ]
        return torch.stack(terms).mean()


class HiddenMSELoss(_HiddenLoss):
    """Mean over valid tokens and hidden units of ``(W h_s - h_t)^2``, averaged over layer pairs."""

    def _per_token(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (s - t).pow(2)  # [B, L, H]: masked mean averages tokens and units alike.


class HiddenCosineLoss(_HiddenLoss):
    """Mean over valid tokens of ``1 - cos(W h_s, h_t)``, averaged over layer pairs."""

    def _per_token(self, s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (1.0 - F.cosine_similarity(s, t, dim=-1, eps=1e-8))[..., None]  # [B, L, 1]


class AttentionLoss(nn.Module):
    """MSE between attention probabilities of mapped layers over valid (query, key) pairs.

    With equal head counts heads are compared one to one; otherwise both sides are averaged
    over heads first.
    """

    def __init__(self, cfg: AttentionConfig, student_config: _SizedConfig | None,
                 teacher_config: _SizedConfig | None) -> None:
        super().__init__()
        self.pairs = _pairs(cfg, student_config, teacher_config)

    def forward(self, student: _Outputs, teacher: _Outputs, labels: torch.Tensor | None,
                attention_mask: torch.Tensor | None) -> torch.Tensor:
        s_att = _get(student, "attentions", "attention", "output_attentions")
        t_att = _get(teacher, "attentions", "attention", "output_attentions")
        mask = None
        if attention_mask is not None:
            m = attention_mask.float()
            mask = (m[:, :, None] * m[:, None, :])[:, None]  # [B, 1, Lq, Lk]
        terms = []
        for t, s in self.pairs:
            a_s, a_t = s_att[s], t_att[t].detach()
            if a_s.shape[1] != a_t.shape[1]:
                a_s, a_t = a_s.mean(1, keepdim=True), a_t.mean(1, keepdim=True)
            terms.append(_masked_mean((a_s - a_t).pow(2), mask))
        return torch.stack(terms).mean()


def build_loss(cfg: LossConfig | Mapping[str, Any], student_config: _SizedConfig | None = None,
               teacher_config: _SizedConfig | None = None) -> nn.Module:
    """Build the module for one loss config (mapping or typed).

    Returns a module called as ``loss(student_out, teacher_out, labels, attention_mask)``.
    """
    cfg = parse_loss_config(cfg)
    if isinstance(cfg, KDKLConfig):
        return KDKLLoss(cfg)
    if isinstance(cfg, CEConfig):
        return CELoss(cfg)
    if isinstance(cfg, HiddenMSEConfig):
        return HiddenMSELoss(cfg, student_config, teacher_config)
    if isinstance(cfg, HiddenCosineConfig):
        return HiddenCosineLoss(cfg, student_config, teacher_config)
    if isinstance(cfg, AttentionConfig):
        return AttentionLoss(cfg, student_config, teacher_config)
    raise ValueError(f"unknown loss kind {getattr(cfg, 'kind', cfg)!r}; valid kinds: {list(LOSS_KINDS)}")


class DistillLoss(nn.Module):
    """``total = sum_i weight_i * loss_i`` over configured terms.

    Projections of hidden-state losses are parameters of this module: give
    ``list(student.parameters()) + list(distill_loss.parameters())`` to the optimizer.

    Args:
        losses: loss configs (typed or mappings with a ``kind``).
        student_config: the student's transformers config; needed by layer-mapped losses.
        teacher_config: the teacher's transformers config; needed by layer-mapped losses.
    """

    def __init__(self, losses: Sequence[LossConfig | Mapping[str, Any]], *,
                 student_config: _SizedConfig | None = None,
                 teacher_config: _SizedConfig | None = None) -> None:
        super().__init__()
        if not losses:
            raise ValueError(f"DistillLoss needs at least one loss, e.g. [{{'kind': 'kd_kl'}}]; valid kinds: {list(LOSS_KINDS)}")
        self.configs = [parse_loss_config(c) for c in losses]
        self.terms = nn.ModuleList(build_loss(c, student_config, teacher_config) for c in self.configs)
        kinds = [c.kind for c in self.configs]
        # Part names are the kinds; a repeated kind gets its position appended (ce, ce_2).
        self.names = [k if kinds.count(k) == 1 else f"{k}_{i}" for i, k in enumerate(kinds)]

    @property
    def needs_hidden_states(self) -> bool:
        """Whether forward passes must use ``output_hidden_states=True``."""
        return any(c.kind in ("hidden_mse", "hidden_cosine") for c in self.configs)

    @property
    def needs_attentions(self) -> bool:
        """Whether forward passes must use ``output_attentions=True`` (eager attention)."""
        return any(c.kind == "attention" for c in self.configs)

    def forward(self, student_outputs: _Outputs, teacher_outputs: _Outputs,
                labels: torch.Tensor | None = None,
                attention_mask: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Return the weighted total and the unweighted, detached parts keyed by name."""
        total = student_outputs.logits.new_zeros(())
        parts: dict[str, torch.Tensor] = {}
        for name, cfg, term in zip(self.names, self.configs, self.terms, strict=True):
            value = term(student_outputs, teacher_outputs, labels, attention_mask)
            parts[name] = value.detach()
            total = total + cfg.weight * value
        return total, parts
