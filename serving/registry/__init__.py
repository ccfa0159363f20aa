"""The version registry: versions and lineage, traffic history, rollout state, feedback (SQLite, WAL).

Imports only the standard library, pydantic and `distilserve.core.card`.
"""

from serving.registry.diff import Change, VersionDiff, diff_cards
from serving.registry.errors import (
    InvalidTrafficError,
    RegistryError,
    RolloutConflictError,
    UnknownRequestError,
    UnknownRolloutError,
    UnknownVersionError,
    VersionConflictError,
)
from serving.registry.records import (
    ActiveRollout,
    DeploymentRecord,
    EventRecord,
    FeedbackStats,
    PredictionRow,
    ShadowRecord,
    VersionRecord,
)
from serving.registry.schema import SCHEMA_VERSION
from serving.registry.store import Registry

__all__ = [
    "SCHEMA_VERSION",
    "ActiveRollout",
    "Change",
    "DeploymentRecord",
    "EventRecord",
    "FeedbackStats",
    "InvalidTrafficError",
    "PredictionRow",
    "Registry",
    "RegistryError",
    "RolloutConflictError",
    "ShadowRecord",
    "UnknownRequestError",
    "UnknownRolloutError",
    "UnknownVersionError",
    "VersionConflictError",
    "VersionDiff",
    "VersionRecord",
    "diff_cards",
]
