"""serving/rollout: pure rollout decisions (policies, decide(), A/B statistics, sticky hashing).

No Ray, FastAPI, HTTP, SQLite, clock or global randomness here (tests/unit/test_layers.py checks);
the controller in `serving/control/` does the I/O.
"""

from serving.rollout.decide import (
    TERMINAL_PHASES,
    Action,
    ActionKind,
    Command,
    Decision,
    MetricsWindow,
    Phase,
    RolloutStatus,
    decide,
    next_step_weight,
    start_status,
)
from serving.rollout.policy import (
    ABPolicy,
    BlueGreenPolicy,
    CanaryGates,
    CanaryPolicy,
    RolloutPolicy,
    ShadowPolicy,
    gates_from_card,
    parse_policy,
)
from serving.rollout.stats import ABResult, GateVerdict, VersionStats, evaluate_gates, msprt_test
from serving.rollout.sticky import assign, bucket

__all__ = [
    "TERMINAL_PHASES",
    "ABPolicy",
    "ABResult",
    "Action",
    "ActionKind",
    "BlueGreenPolicy",
    "CanaryGates",
    "CanaryPolicy",
    "Command",
    "Decision",
    "GateVerdict",
    "MetricsWindow",
    "Phase",
    "RolloutPolicy",
    "RolloutStatus",
    "ShadowPolicy",
    "VersionStats",
    "assign",
    "bucket",
    "decide",
    "evaluate_gates",
    "gates_from_card",
    "msprt_test",
    "next_step_weight",
    "parse_policy",
    "start_status",
]
