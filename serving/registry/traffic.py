"""Pure traffic-table rules: validation, which version is primary, where a rollback goes."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

from serving.registry.errors import InvalidTrafficError

# Weights are percents typed by people and computed by step schedules (e.g. 100/3 three times);
# a sum within this of 100 is 100. Anything looser would let a 99.9 % table through.
SUM_TOLERANCE = 1e-6
EXAMPLE = "{'1': 90.0, '2': 10.0}"


def version_key(version: str) -> tuple[int, int, str]:
    """Sort key ordering versions numerically ('2' < '10'); non-numbers sort after, by text."""
    return (0, int(version), "") if version.isdigit() else (1, 0, version)


def validate_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Check a traffic table and return it as {version: float percent}.

    Raises:
        InvalidTrafficError: naming the bad version, weight or sum.
    """
    if not isinstance(weights, Mapping) or not weights:
        raise InvalidTrafficError(
            f"traffic weights must name at least one version, e.g. {EXAMPLE}; got {weights!r}"
        )
    clean: dict[str, float] = {}
    for version, weight in weights.items():
        if not isinstance(version, str) or not version:
            raise InvalidTrafficError(f"traffic versions must be non-empty strings like '1', got {version!r}")
        # bool is an int subclass: {'1': True} is a typo, not 1 %.
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not math.isfinite(weight):
            raise InvalidTrafficError(
                f"traffic weight for version {version!r} must be a finite number, got {weight!r}"
            )
        if not 0 <= weight <= 100:
            raise InvalidTrafficError(
                f"traffic weight for version {version!r} must be in [0, 100], got {weight!r}"
            )
        clean[version] = float(weight)
    total = math.fsum(clean.values())
    if abs(total - 100.0) > SUM_TOLERANCE:
        raise InvalidTrafficError(
            f"traffic weights must sum to 100 (±{SUM_TOLERANCE}), got {total!r} from {dict(weights)!r}; e.g. {EXAMPLE}"
        )
    return clean


def live_of(traffic: Mapping[str, float]) -> set[str]:
    return {v for v, w in traffic.items() if w > 0}


def primary_of(traffic: Mapping[str, float]) -> str | None:
    """The version with the largest share; a tie goes to the newest version.

    Why the newest: in a 50/50 step the newer version is the one being introduced, so the
    rollback target of that table is the version that was fully live before it.
    """
    live = [v for v, w in traffic.items() if w > 0]
    if not live:
        return None
    return max(live, key=lambda v: (traffic[v], version_key(v)))


def full_version(traffic: Mapping[str, float]) -> str | None:
    """The version taking (all but rounding of) 100 % of requests, if one does."""
    return next((v for v, w in traffic.items() if w >= 100.0 - SUM_TOLERANCE), None)


def same_traffic(a: Mapping[str, float], b: Mapping[str, float]) -> bool:
    # Zero-weight entries route nothing, so {'1': 100} and {'1': 100, '2': 0} are the same table.
    keys = live_of(a) | live_of(b)
    return all(abs(a.get(k, 0.0) - b.get(k, 0.0)) <= SUM_TOLERANCE for k in keys)


def rollback_target(
    current: Mapping[str, float], history_newest_first: Iterable[Mapping[str, float]], deployable: set[str]
) -> str | None:
    """The previous distinct version that was 100 % live before the current primary.

    Walks the history newest first, skipping tables equal to the current one, tables with no
    single 100 % version, tables whose 100 % version is the current primary, and versions that
    can no longer serve (not in `deployable`, e.g. pruned). Lazy: stops at the first match.
    """
    primary = primary_of(current)
    for table in history_newest_first:
        if same_traffic(table, current):
            continue
        full = full_version(table)
        if full is not None and full != primary and full in deployable:
            return full
    return None
