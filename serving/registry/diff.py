"""What changed between two versions' cards: weights, code, data, config and metrics."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from distilserve.core.card import ModelCard

Section = Literal["model", "code", "data", "config", "metrics"]
SECTIONS: tuple[Section, ...] = ("model", "code", "data", "config", "metrics")


class Change(BaseModel):
    model_config = ConfigDict(frozen=True)

    section: Section
    key: str = Field(description="Field name; config keys are dotted paths, e.g. 'train.lr'.")
    kind: Literal["changed", "added", "removed"]
    a: Any = Field(default=None, description="Value in version a (None when added).")
    b: Any = Field(default=None, description="Value in version b (None when removed).")


class VersionDiff(BaseModel):
    """Differences from version `a` to version `b` of `model`; empty `changes` means identical."""

    model_config = ConfigDict(frozen=True)

    model: str
    a: str
    b: str
    changes: list[Change]

    def section(self, name: Section) -> list[Change]:
        return [c for c in self.changes if c.section == name]

    def get(self, section: Section, key: str) -> Change | None:
        return next((c for c in self.changes if c.section == section and c.key == key), None)

    def render(self) -> str:
        """A plain-text table: section | key | a | b."""
        title = f"{self.model}: version {self.a} -> {self.b}"
        if not self.changes:
            return f"{title}\nno differences\n"
        header = ("section", "key", f"v{self.a}", f"v{self.b}")
        rows = [header] + [
            (c.section, c.key, _cell(c.a, c.kind == "added"), _cell(c.b, c.kind == "removed"))
            for c in self.changes
        ]
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = [" | ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "-+-".join("-" * w for w in widths))
        return f"{title}\n" + "\n".join(lines) + "\n"


def _cell(value: Any, absent: bool) -> str:
    if absent:
        return "(absent)"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    # Long values (hashes, lists) would push the table off the screen; 64 keeps a full sha256.
    return text if len(text) <= 64 else text[:61] + "..."


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'train': {'lr': 1e-3}} -> {'train.lr': 1e-3}. Lists are values, not expanded."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def _fields(card: ModelCard) -> dict[Section, dict[str, Any]]:
    lin = card.lineage
    metrics: dict[str, Any] = {
        "accuracy": card.accuracy,
        "accuracy_std": card.accuracy_std,
        "eval_examples": card.eval_examples,
    }
    for stats in card.latency:
        metrics[f"latency.batch{stats.batch_size}.p50_ms"] = stats.p50_ms
        metrics[f"latency.batch{stats.batch_size}.p99_ms"] = stats.p99_ms
    return {
        "model": {
            "weights_sha256": lin.weights_sha256,
            "parameters": card.parameters,
            "bytes": card.bytes,
            "dtype": card.dtype,
            "kind": card.kind,
            "base_model": lin.base_model,
            "teacher_version": lin.teacher_version,
            "labels": card.labels,
            "max_seq_len": card.max_seq_len,
        },
        "code": {"code_commit": lin.code_commit, "code_dirty": lin.code_dirty},
        "data": {"data_fingerprint": lin.data_fingerprint},
        "config": {"config_hash": lin.config_hash, **flatten(lin.config, "config.")},
        "metrics": metrics,
    }


def diff_cards(model: str, a: str, b: str, card_a: ModelCard, card_b: ModelCard) -> VersionDiff:
    """Pure: compare two cards section by section, keys in a stable order."""
    fa, fb = _fields(card_a), _fields(card_b)
    changes: list[Change] = []
    for section in SECTIONS:
        left, right = fa[section], fb[section]
        for key in list(left) + [k for k in right if k not in left]:
            if key not in right:
                changes.append(Change(section=section, key=key, kind="removed", a=left[key]))
            elif key not in left:
                changes.append(Change(section=section, key=key, kind="added", b=right[key]))
            elif left[key] != right[key]:
                changes.append(Change(section=section, key=key, kind="changed", a=left[key], b=right[key]))
    return VersionDiff(model=model, a=a, b=b, changes=changes)
