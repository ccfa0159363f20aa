"""The version registry: versions and lineage, traffic history, rollout state, feedback.

One store (`Registry`) over two backends: a SQLite file (WAL; the embedded default) or
PostgreSQL (`postgresql://...`, for a cluster). Imports the standard library, pydantic,
SQLAlchemy Core and `distilserve.core.card`; alembic only when a schema must be migrated,
psycopg only for PostgreSQL.
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
