"""Sticky assignment: the same user, salt and weights always land on the same version.

The hash is sha256 (not Python's `hash()`, which is salted per process), so every Router
replica and every restart agrees. A user's assignment changes only when the weights change
(or the salt: a new experiment reshuffles everyone on purpose). When weights change, users
move only where the cumulative boundaries moved; the rest keep their version.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping

# 64 bits of the digest as a fraction of 2**64: uniform on [0, 1) and far finer than any weight.
_SCALE = float(2**64)


def bucket(user_id: str, salt: str) -> float:
    """The user's fixed point in [0, 1) for this experiment."""
    digest = hashlib.sha256(f"{salt}\x00{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def assign(user_id: str, salt: str, weights: Mapping[str, float]) -> str:
    """The version `user_id` gets under `weights` ({version: weight}, normalised; any positive total).

    Versions are laid out in sorted order so the dict's insertion order cannot move users.

    Raises:
        ValueError: no versions, a negative or non-finite weight, or all weights zero.
    """
    if not weights:
        raise ValueError("weights must name at least one version, e.g. {'1': 50, '2': 50}; got {}")
    bad = {v: w for v, w in weights.items() if not math.isfinite(w) or w < 0}
    if bad:
        raise ValueError(f"weights must be finite and >= 0, got {bad} in {dict(weights)}")
    total = math.fsum(weights.values())
    if total <= 0:
        raise ValueError(f"weights must not all be 0, got {dict(weights)}")
    point = bucket(user_id, salt) * total
    cumulative = 0.0
    live = [v for v in sorted(weights) if weights[v] > 0]
    for version in live:
        cumulative += weights[version]
        if point < cumulative:
            return version
    # Rounding can leave the running sum a hair below `total` for a point in the last sliver.
    return live[-1]
