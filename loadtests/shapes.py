"""Load shapes as data: stage tables of target request rates, and the pure `tick` locust calls.

A shape is a list of `Stage`s; each holds a target rate (requests/s) for `duration_s`, either
flat or ramped linearly from `start_rps`. Locust controls users, not rates, so
every simulated user is paced at `per_user_rps` (locust's `constant_throughput`) and a target
of R req/s becomes ceil(R / per_user_rps) users. A user waits for its answer, so a saturated
server gets fewer requests than the target: the target is an offered-load ceiling.

No locust, gevent or clock here: `tick(stages, t, ...)` takes the run time in, so the tables
are unit-tested as tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    duration_s: float
    rps: float
    start_rps: float | None = None  # None: flat at `rps`; else linear from start_rps to rps

    def __post_init__(self) -> None:
        if self.duration_s <= 0:
            raise ValueError(f"duration_s must be > 0, like 10.0, got {self.duration_s}")
        if self.rps < 0 or (self.start_rps is not None and self.start_rps < 0):
            raise ValueError(f"rates must be >= 0, like 100.0, got rps={self.rps}, start_rps={self.start_rps}")


def steady(duration_s: float, rps: float = 50.0) -> list[Stage]:
    """One flat rate for the whole run."""
    return [Stage(duration_s, rps)]


def step(duration_s: float, levels: tuple[float, ...] = (10.0, 100.0, 1000.0)) -> list[Stage]:
    """Equal-length flat stages, one per level (default 10 -> 100 -> 1,000 req/s)."""
    if not levels:
        raise ValueError("levels must name at least one rate, like (10, 100, 1000)")
    return [Stage(duration_s / len(levels), float(r)) for r in levels]


def ramp(duration_s: float, start: float = 10.0, end: float = 1000.0) -> list[Stage]:
    """From `start` to `end` linearly over the whole run."""
    return [Stage(duration_s, end, start_rps=start)]


def spike(duration_s: float, base: float = 20.0, peak: float = 500.0, share: float = 0.2) -> list[Stage]:
    """`base`, then `peak` for `share` of the run in the middle, then `base` again."""
    if not 0 < share < 1:
        raise ValueError(f"share must be in (0, 1), like 0.2, got {share}")
    calm = duration_s * (1 - share) / 2
    return [Stage(calm, base), Stage(duration_s * share, peak), Stage(calm, base)]


SHAPES: dict[str, Callable[..., list[Stage]]] = {"steady": steady, "step": step, "ramp": ramp, "spike": spike}


def build(name: str, duration_s: float, **params: object) -> list[Stage]:
    """The stage table of shape `name`; the error lists the valid names."""
    try:
        factory = SHAPES[name]
    except KeyError:
        raise ValueError(f"shape must be one of {sorted(SHAPES)}, got {name!r}") from None
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, like 60, got {duration_s}")
    return factory(duration_s, **params)


def total_duration(stages: list[Stage]) -> float:
    return sum(s.duration_s for s in stages)


def target_rps(stages: list[Stage], t: float) -> float | None:
    """Target rate at run time `t` seconds; None once the table has run out (locust stops)."""
    start = 0.0
    for stage in stages:
        end = start + stage.duration_s
        if t < end:
            if stage.start_rps is None:
                return stage.rps
            return stage.start_rps + (stage.rps - stage.start_rps) * (t - start) / stage.duration_s
        start = end
    return None


def users_for(rps: float, per_user_rps: float) -> int:
    """Users needed to offer `rps` when each sends at most `per_user_rps`; at least 1."""
    if per_user_rps <= 0:
        raise ValueError(f"per_user_rps must be > 0, like 10, got {per_user_rps}")
    # Round first so that float noise (100 / 10 = 10.000000000000002) does not add a user.
    return max(1, math.ceil(round(rps / per_user_rps, 6)))


def tick(stages: list[Stage], t: float, per_user_rps: float) -> tuple[int, float] | None:
    """(users, spawn rate) for locust's LoadTestShape.tick; None ends the run.

    The spawn rate equals the user count, so any change lands within about one second:
    a step must look like a step to the autoscaler.
    """
    rps = target_rps(stages, t)
    if rps is None:
        return None
    users = users_for(rps, per_user_rps)
    return users, float(max(users, 1))
