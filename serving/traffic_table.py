"""The traffic table and the routing choice. Pure: no Ray, no HTTP, no clock.

Weighted routing draws a uniform number per request; with a `user_id` the choice is a
stable hash of (salt, user) instead, so a user sees one version for as long as the weights
stand (A/B stickiness). Shadow copies are chosen the same way, independently.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from serving.rollout.sticky import assign, bucket


def unit_hash(salt: str, key: str) -> float:
    """A stable number in [0, 1) for (salt, key); identical across processes and machines."""
    return bucket(key, salt)  # one hash for routing and A/B analysis: serving.rollout.sticky


def pick(weights: dict[str, float], u: float) -> str:
    """The version whose cumulative weight interval holds `u` in [0, 1).

    Versions are visited in numeric order so that the mapping from u to version depends
    only on the weights, never on dict order.
    """
    live = [(v, w) for v, w in sorted(weights.items(), key=lambda kv: _num(kv[0])) if w > 0]
    if not live:
        raise LookupError("no version has traffic")
    total = sum(w for _, w in live)
    acc = 0.0
    for version, w in live:
        acc += w / total
        if u < acc:
            return version
    return live[-1][0]  # u within float rounding of 1.0


def _num(version: str) -> tuple[int, str]:
    return (int(version), "") if version.isdigit() else (1 << 62, version)


@dataclass(frozen=True)
class TrafficTable:
    """Live routing state of one model, as read from the registry."""

    weights: dict[str, float]
    shadow_version: str | None = None
    shadow_share: float = 0.0  # percent of requests copied to the shadow version
    salt: str = "default"
    revision: int = 0
    extra: dict = field(default_factory=dict)

    def choose(self, user_id: str | None, u: float) -> str:
        """Version for one request; `u` is a fresh uniform draw used when there is no user."""
        return assign(user_id, self.salt, self.weights) if user_id else pick(self.weights, u)

    def shadow_for(self, request_key: str) -> str | None:
        """The shadow version if this request is in the shadow share, else None."""
        if not self.shadow_version or self.shadow_share <= 0:
            return None
        return self.shadow_version if unit_hash(self.salt + ":shadow", request_key) * 100 < self.shadow_share else None

    @property
    def primary(self) -> str | None:
        """The version with the most traffic (ties: the newer)."""
        if not self.weights:
            return None
        return max(self.weights.items(), key=lambda kv: (kv[1], _num(kv[0])))[0]
