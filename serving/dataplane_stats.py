"""Per-version inference statistics in the shape of Triton's statistics extension
(`GET /v2/models/{m}/stats`), counted at the ingress: what clients of this endpoint saw.

Triton's own per-stage numbers (queue, compute_input/infer/output) live inside each replica's
Triton and are not summed here; they are reported as zero, the end-to-end success and fail
durations are the ingress's.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STAGES = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss")


@dataclass
class _VersionStats:
    last_inference_ms: int = 0
    inference_count: int = 0  # texts answered (Triton counts batch elements)
    execution_count: int = 0  # requests answered by a model call (not the cache)
    durations: dict[str, list[int]] = field(default_factory=lambda: {s: [0, 0] for s in STAGES})  # [count, ns]


class InferenceStats:
    def __init__(self) -> None:
        self._by: dict[tuple[str, str], _VersionStats] = {}

    def _at(self, model: str, version: str, now: float) -> _VersionStats:
        s = self._by.setdefault((model, version), _VersionStats())
        s.last_inference_ms = int(now * 1000)
        return s

    def record(self, model: str, version: str, stage: str, texts: int, seconds: float, now: float) -> None:
        """One request: `stage` "success", "fail" or "cache_hit"."""
        s = self._at(model, version, now)
        count_ns = s.durations[stage]
        count_ns[0] += 1
        count_ns[1] += int(seconds * 1e9)
        if stage != "fail":
            s.inference_count += texts
        if stage == "success":
            s.execution_count += 1

    def triton_json(self, model: str, versions: list[str]) -> dict:
        return {"model_stats": [self._one(model, v) for v in versions]}

    def _one(self, model: str, version: str) -> dict:
        s = self._by.get((model, version), _VersionStats())
        return {
            "name": model,
            "version": version,
            "last_inference": s.last_inference_ms,
            "inference_count": s.inference_count,
            "execution_count": s.execution_count,
            "inference_stats": {k: {"count": c, "ns": ns} for k, (c, ns) in s.durations.items()},
            "batch_stats": [],
        }
