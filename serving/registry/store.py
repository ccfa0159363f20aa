"""`Registry`: versions with lineage, the traffic table and its history, shadow, retention.

Rollout state/events, feedback and warm versions live in their own mixins (`rollouts.py`,
`feedback.py`, `warm.py`); this class joins them over one database (SQLite or PostgreSQL; see
`db.py` for transactions and `schema.py` for the tables).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from distilserve.core.card import ModelCard
from serving.registry import retention, traffic
from serving.registry.diff import VersionDiff, diff_cards
from serving.registry.errors import (
    InvalidTrafficError,
    RegistryError,
    UnknownVersionError,
    VersionConflictError,
)
from serving.registry.feedback import FeedbackStore
from serving.registry.records import DeploymentRecord, ShadowRecord, VersionRecord
from serving.registry.rollouts import RolloutStore
from serving.registry.schema import deployments, shadows, versions, warm
from serving.registry.warm import WarmStore

log = logging.getLogger(__name__)

_VERSION_COLUMNS = (
    versions.c.model,
    versions.c.version,
    versions.c.path,
    versions.c.card_json,
    versions.c.registered_at,
    versions.c.status,
)


def _version(row: Any) -> VersionRecord:
    model, version, path, card_json, registered_at, status = row
    return VersionRecord(
        model=model,
        version=version,
        path=path,
        card=ModelCard.model_validate_json(card_json),
        registered_at=registered_at,
        status=status,
    )


def _deployment(row: Any) -> DeploymentRecord:
    id_, model, ts, traffic_json, previous_json, reason, actor = row
    return DeploymentRecord(
        id=id_,
        model=model,
        ts=ts,
        traffic=json.loads(traffic_json),
        previous=json.loads(previous_json),
        reason=reason,
        actor=actor,
    )


def _one_version(model: str, version: str) -> sa.ColumnElement[bool]:
    return sa.and_(versions.c.model == model, versions.c.version == version)


def _by_version(rows: Any) -> list[Any]:
    # Numeric order ('2' before '10') in Python: SQLite and PostgreSQL cast text differently.
    return sorted(rows, key=lambda r: traffic.version_key(r.version))


class Registry(RolloutStore, FeedbackStore, WarmStore):
    """The version registry of every model: a SQLite file every process on a machine opens, or a
    PostgreSQL database shared by a cluster.

    Args:
        path: a SQLite file (created with its folder when missing) or a `postgresql://` URL.
        timeout: seconds a write waits for another writer's lock (and a PostgreSQL connect).
        clock: source of timestamps (tests pass a fake).
    """

    # ---- versions -------------------------------------------------------------------------

    def register_version(self, model: str, version: str, path: str | Path, card: ModelCard) -> VersionRecord:
        """Record a version; registering the same weights again returns the existing record.

        A pruned version registered again with the same weights (re-exported) becomes available.

        Raises:
            RegistryError: the card names another model or version.
            VersionConflictError: `version` is registered with a different weights_sha256.
        """
        if card.model != model or card.version != version:
            raise RegistryError(
                f"card is for {card.model!r} version {card.version!r}, not {model!r} version {version!r}"
            )
        sha = card.lineage.weights_sha256
        folder = str(Path(path).absolute())
        with self.transaction() as conn:
            row = conn.execute(
                sa.select(versions.c.weights_sha256, versions.c.status, *_VERSION_COLUMNS).where(
                    _one_version(model, version)
                )
            ).first()
            if row is None:
                conn.execute(
                    versions.insert().values(
                        model=model,
                        version=version,
                        path=folder,
                        card_json=card.model_dump_json(),
                        weights_sha256=sha,
                        registered_at=self._now(),
                        status="available",
                    )
                )
            elif row[0] != sha:
                raise VersionConflictError(
                    f"version {version!r} of model {model!r} is registered with weights_sha256 {row[0]!r}; "
                    f"refusing different weights {sha!r} under the same version: export a new version"
                )
            elif row[1] == "pruned":
                conn.execute(
                    versions.update()
                    .where(_one_version(model, version))
                    .values(path=folder, card_json=card.model_dump_json(), status="available")
                )
            else:
                return _version(row[2:])
            return _version(conn.execute(sa.select(*_VERSION_COLUMNS).where(_one_version(model, version))).one())

    def get_version(self, model: str, version: str) -> VersionRecord | None:
        with self._read() as conn:
            row = conn.execute(sa.select(*_VERSION_COLUMNS).where(_one_version(model, version))).first()
        return _version(row) if row else None

    def list_versions(self, model: str) -> list[VersionRecord]:
        """Every version of `model`, pruned ones included, in numeric order ('2' before '10')."""
        with self._read() as conn:
            rows = conn.execute(sa.select(*_VERSION_COLUMNS).where(versions.c.model == model)).all()
        return [_version(r) for r in _by_version(rows)]

    def models(self) -> list[str]:
        with self._read() as conn:
            return sorted(conn.execute(sa.select(versions.c.model).distinct()).scalars())

    def _available(self, conn: Connection, model: str) -> list[str]:
        rows = conn.execute(
            sa.select(versions.c.version).where(versions.c.model == model, versions.c.status == "available")
        ).all()
        return [r.version for r in _by_version(rows)]

    def _require_available(
        self, conn: Connection, model: str, wanted: list[str], what: str
    ) -> None:
        available = self._available(conn, model)
        missing = [v for v in wanted if v not in available]
        if missing:
            pruned = set(
                conn.execute(
                    sa.select(versions.c.version).where(versions.c.model == model, versions.c.status == "pruned")
                ).scalars()
            )
            why = ", ".join(f"{v!r} ({'pruned' if v in pruned else 'not registered'})" for v in missing)
            raise InvalidTrafficError(
                f"{what} for model {model!r} names versions that cannot serve: {why}; available: {available}"
            )

    # ---- traffic and history --------------------------------------------------------------

    def _current(self, conn: Connection, model: str) -> dict[str, float]:
        text = conn.execute(
            sa.select(deployments.c.traffic_json)
            .where(deployments.c.model == model)
            .order_by(deployments.c.id.desc())
            .limit(1)
        ).scalar()
        return json.loads(text) if text else {}

    def set_traffic(
        self, model: str, weights: dict[str, float], reason: str, actor: str = "cli"
    ) -> DeploymentRecord:
        """Replace the traffic table of `model` (percent per version) and append it to the history.

        Raises:
            InvalidTrafficError: weights not in [0, 100], not summing to 100, or naming a version
                that is not registered or was pruned.
        """
        clean = traffic.validate_weights(weights)
        if not reason.strip():
            raise InvalidTrafficError(f"set_traffic for model {model!r} needs a reason, got {reason!r}")
        ts = self._now()
        with self.transaction() as conn:
            self._require_available(conn, model, list(clean), "traffic")
            previous = self._current(conn, model)
            cur = conn.execute(
                deployments.insert().values(
                    model=model,
                    ts=ts,
                    traffic_json=json.dumps(clean, sort_keys=True),
                    previous_json=json.dumps(previous, sort_keys=True),
                    reason=reason,
                    actor=actor,
                )
            )
            record_id = int(cur.inserted_primary_key[0])
        return DeploymentRecord(
            id=record_id, model=model, ts=ts, traffic=clean, previous=previous, reason=reason, actor=actor
        )

    def get_traffic(self, model: str) -> dict[str, float]:
        """The current table {version: percent}; {} when traffic was never set."""
        with self._read() as conn:
            return self._current(conn, model)

    def live_versions(self, model: str) -> set[str]:
        """Versions taking a share of requests now (weight > 0); the shadow is not included."""
        return traffic.live_of(self.get_traffic(model))

    def history(self, model: str, limit: int = 100) -> list[DeploymentRecord]:
        """The newest `limit` traffic changes of `model`, newest first."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(deployments)
                .where(deployments.c.model == model)
                .order_by(deployments.c.id.desc())
                .limit(int(limit))
            ).all()
        return [_deployment(r) for r in rows]

    def _rollback_target(self, conn: Connection, model: str) -> str | None:
        # Lazy: the walk usually stops within the last few rows of a long history, so rows are
        # fetched in small batches (yield_per) rather than all at once.
        # (On the statement, not the connection: a connection option would stream every later
        # statement of the transaction through a server-side cursor, UPDATEs included.)
        rows = conn.execute(
            sa.select(deployments.c.traffic_json)
            .where(deployments.c.model == model)
            .order_by(deployments.c.id.desc())
            .execution_options(yield_per=16)
        )
        tables = (json.loads(text) for text in rows.scalars())
        current = next(tables, None)
        if current is None:
            return None
        return traffic.rollback_target(current, tables, set(self._available(conn, model)))

    def rollback_target(self, model: str) -> str | None:
        """The version that was 100 % live before the current primary (see `traffic.rollback_target`)."""
        with self._read() as conn:
            return self._rollback_target(conn, model)

    # ---- shadow ---------------------------------------------------------------------------

    def set_shadow(self, model: str, version: str | None, share: float = 100.0) -> ShadowRecord | None:
        """Copy `share` percent of requests to `version` (answers discarded); None clears the shadow."""
        with self.transaction() as conn:
            if version is None:
                conn.execute(shadows.delete().where(shadows.c.model == model))
                return None
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 100:
                raise InvalidTrafficError(
                    f"shadow share for model {model!r} must be in (0, 100], got {share!r}"
                )
            self._require_available(conn, model, [version], "shadow")
            record = ShadowRecord(model=model, version=version, share=float(share), updated_at=self._now())
            self._upsert(conn, shadows, record.model_dump(), ["model"], ["version", "share", "updated_at"])
            return record

    def get_shadow(self, model: str) -> ShadowRecord | None:
        with self._read() as conn:
            row = conn.execute(sa.select(shadows).where(shadows.c.model == model)).first()
        return ShadowRecord(**row._mapping) if row else None

    # ---- diff and retention ---------------------------------------------------------------

    def diff(self, model: str, a: str, b: str) -> VersionDiff:
        """What changed from version `a` to version `b` (cards and lineage).

        Raises:
            UnknownVersionError: either version is not registered.
        """
        records = {v: self.get_version(model, v) for v in (a, b)}
        for v, rec in records.items():
            if rec is None:
                raise UnknownVersionError(f"version {v!r} of model {model!r} is not registered")
        ra, rb = records[a], records[b]
        assert ra is not None and rb is not None
        return diff_cards(model, a, b, ra.card, rb.card)

    def prune(self, model: str, keep: int = 3, delete_files: bool = True) -> list[str]:
        """Retire all but the newest `keep` available versions; returns the versions pruned now.

        Never retires a live version, the shadow, or the rollback target. Retired versions get
        status 'pruned' (one transaction); then their folders are deleted when `delete_files`
        and the folder is exactly `<model dir>/<model>/<version>`. Refusals are logged and
        recorded as 'prune.refused' events. Folders of earlier prunes left by a crash between
        the two steps are deleted too.
        """
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise RegistryError(f"keep must be an integer >= 0, got {keep!r}")
        with self.transaction() as conn:
            protected = traffic.live_of(self._current(conn, model))
            protected |= set(conn.execute(sa.select(shadows.c.version).where(shadows.c.model == model)).scalars())
            protected |= set(conn.execute(sa.select(warm.c.version).where(warm.c.model == model)).scalars())
            target = self._rollback_target(conn, model)
            if target is not None:
                protected.add(target)
            doomed = retention.choose_prunable(self._available(conn, model), keep, protected)
            if doomed:
                conn.execute(
                    versions.update()
                    .where(versions.c.model == model, versions.c.version.in_(doomed))
                    .values(status="pruned")
                )
            folders = conn.execute(
                sa.select(versions.c.version, versions.c.path).where(
                    versions.c.model == model, versions.c.status == "pruned"
                )
            ).all()
        # Files go after the commit: a crash here leaves folders of pruned versions, which the
        # next prune removes; the other order could leave an 'available' version with no files.
        if delete_files:
            for version, path in folders:
                reason = retention.remove_version_dir(Path(path), model, version)
                if reason is not None:
                    log.warning("prune %s: kept folder of version %s: %s", model, version, reason)
                    if version in doomed:
                        self.record_event(model, "prune.refused", reason, {"version": version, "path": path})
        return doomed
