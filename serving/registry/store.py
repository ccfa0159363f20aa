"""`Registry`: versions with lineage, the traffic table and its history, shadow, retention.

Rollout state/events and feedback live in their own mixins (`rollouts.py`, `feedback.py`);
this class joins them over one SQLite connection (see `db.py` for transactions).
"""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

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
from serving.registry.warm import WarmStore

log = logging.getLogger(__name__)

_VERSION_COLUMNS = "model, version, path, card_json, registered_at, status"
_NUMERIC_ORDER = "ORDER BY CAST(version AS INTEGER), version"


def _version(row: tuple[Any, ...]) -> VersionRecord:
    model, version, path, card_json, registered_at, status = row
    return VersionRecord(
        model=model,
        version=version,
        path=path,
        card=ModelCard.model_validate_json(card_json),
        registered_at=registered_at,
        status=status,
    )


def _deployment(row: tuple[Any, ...]) -> DeploymentRecord:
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


class Registry(RolloutStore, FeedbackStore, WarmStore):
    """The version registry of every model, in one SQLite file shared by all processes.

    Args:
        path: the SQLite file (created with its folder when missing).
        timeout: seconds a write waits for another process's write lock.
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
                f"SELECT weights_sha256, status, {_VERSION_COLUMNS} FROM versions WHERE model = ? AND version = ?",
                (model, version),
            ).fetchone()
            if row is None:
                conn.execute(
                    """INSERT INTO versions (model, version, path, card_json, weights_sha256, registered_at, status)
                       VALUES (?, ?, ?, ?, ?, ?, 'available')""",
                    (model, version, folder, card.model_dump_json(), sha, self._now()),
                )
            elif row[0] != sha:
                raise VersionConflictError(
                    f"version {version!r} of model {model!r} is registered with weights_sha256 {row[0]!r}; "
                    f"refusing different weights {sha!r} under the same version: export a new version"
                )
            elif row[1] == "pruned":
                conn.execute(
                    "UPDATE versions SET path = ?, card_json = ?, status = 'available' WHERE model = ? AND version = ?",
                    (folder, card.model_dump_json(), model, version),
                )
            else:
                return _version(row[2:])
            return _version(
                conn.execute(
                    f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? AND version = ?",
                    (model, version),
                ).fetchone()
            )

    def get_version(self, model: str, version: str) -> VersionRecord | None:
        with self._read() as conn:
            row = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? AND version = ?", (model, version)
            ).fetchone()
        return _version(row) if row else None

    def list_versions(self, model: str) -> list[VersionRecord]:
        """Every version of `model`, pruned ones included, in numeric order ('2' before '10')."""
        with self._read() as conn:
            rows = conn.execute(
                f"SELECT {_VERSION_COLUMNS} FROM versions WHERE model = ? {_NUMERIC_ORDER}", (model,)
            ).fetchall()
        return [_version(r) for r in rows]

    def models(self) -> list[str]:
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT DISTINCT model FROM versions ORDER BY model")]

    def _available(self, conn: sqlite3.Connection, model: str) -> list[str]:
        rows = conn.execute(
            f"SELECT version FROM versions WHERE model = ? AND status = 'available' {_NUMERIC_ORDER}",
            (model,),
        )
        return [r[0] for r in rows]

    def _require_available(
        self, conn: sqlite3.Connection, model: str, versions: list[str], what: str
    ) -> None:
        available = self._available(conn, model)
        missing = [v for v in versions if v not in available]
        if missing:
            pruned = {
                r[0]
                for r in conn.execute(
                    "SELECT version FROM versions WHERE model = ? AND status = 'pruned'", (model,)
                )
            }
            why = ", ".join(f"{v!r} ({'pruned' if v in pruned else 'not registered'})" for v in missing)
            raise InvalidTrafficError(
                f"{what} for model {model!r} names versions that cannot serve: {why}; available: {available}"
            )

    # ---- traffic and history --------------------------------------------------------------

    def _current(self, conn: sqlite3.Connection, model: str) -> dict[str, float]:
        row = conn.execute(
            "SELECT traffic_json FROM deployments WHERE model = ? ORDER BY id DESC LIMIT 1", (model,)
        ).fetchone()
        return json.loads(row[0]) if row else {}

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
                """INSERT INTO deployments (model, ts, traffic_json, previous_json, reason, actor)
                   VALUES (?, ?, ?, ?, ?, ?)""",
                (
                    model,
                    ts,
                    json.dumps(clean, sort_keys=True),
                    json.dumps(previous, sort_keys=True),
                    reason,
                    actor,
                ),
            )
            record_id = cur.lastrowid
        assert record_id is not None  # an INSERT into a rowid table always sets it
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
                """SELECT id, model, ts, traffic_json, previous_json, reason, actor FROM deployments
                   WHERE model = ? ORDER BY id DESC LIMIT ?""",
                (model, int(limit)),
            ).fetchall()
        return [_deployment(r) for r in rows]

    def _rollback_target(self, conn: sqlite3.Connection, model: str) -> str | None:
        # Lazy cursor: the walk usually stops within the last few rows of a long history.
        tables = (
            json.loads(r[0])
            for r in conn.execute(
                "SELECT traffic_json FROM deployments WHERE model = ? ORDER BY id DESC", (model,)
            )
        )
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
                conn.execute("DELETE FROM shadows WHERE model = ?", (model,))
                return None
            if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share <= 100:
                raise InvalidTrafficError(
                    f"shadow share for model {model!r} must be in (0, 100], got {share!r}"
                )
            self._require_available(conn, model, [version], "shadow")
            record = ShadowRecord(model=model, version=version, share=float(share), updated_at=self._now())
            conn.execute(
                """INSERT INTO shadows (model, version, share, updated_at) VALUES (?, ?, ?, ?)
                   ON CONFLICT (model) DO UPDATE SET version = excluded.version, share = excluded.share,
                   updated_at = excluded.updated_at""",
                (model, version, record.share, record.updated_at),
            )
            return record

    def get_shadow(self, model: str) -> ShadowRecord | None:
        with self._read() as conn:
            row = conn.execute(
                "SELECT model, version, share, updated_at FROM shadows WHERE model = ?", (model,)
            ).fetchone()
        return ShadowRecord(model=row[0], version=row[1], share=row[2], updated_at=row[3]) if row else None

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
            shadow = conn.execute("SELECT version FROM shadows WHERE model = ?", (model,)).fetchone()
            if shadow:
                protected.add(shadow[0])
            protected |= {r[0] for r in conn.execute("SELECT version FROM warm WHERE model = ?", (model,))}
            target = self._rollback_target(conn, model)
            if target is not None:
                protected.add(target)
            doomed = retention.choose_prunable(self._available(conn, model), keep, protected)
            conn.executemany(
                "UPDATE versions SET status = 'pruned' WHERE model = ? AND version = ?",
                [(model, v) for v in doomed],
            )
            folders = conn.execute(
                "SELECT version, path FROM versions WHERE model = ? AND status = 'pruned'", (model,)
            ).fetchall()
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
