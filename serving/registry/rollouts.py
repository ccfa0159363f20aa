"""Rollout state and events: what a restarted rollout controller needs to resume."""

from __future__ import annotations

import json
from typing import Any

from serving.registry.db import Database
from serving.registry.errors import RegistryError, RolloutConflictError, UnknownRolloutError
from serving.registry.records import ActiveRollout, EventRecord


def _json_object_text(text: str, what: str) -> str:
    try:
        json.loads(text)
    except (TypeError, ValueError) as exc:
        raise RegistryError(f"{what} must be JSON text, got {text!r:.200}: {exc}") from None
    return text


class RolloutStore(Database):
    """Mixin of `Registry`: one active rollout per model, its opaque status, and an event log."""

    def save_rollout(self, model: str, rollout_id: str, strategy: str, status_json: str) -> None:
        """Create or update the active rollout of `model` (the controller calls this every step).

        Raises:
            RolloutConflictError: another rollout is active for `model`, or `rollout_id` finished.
        """
        _json_object_text(status_json, "status_json")
        now = self._now()
        with self.transaction() as conn:
            row = conn.execute(
                "SELECT rollout_id FROM rollouts WHERE model = ? AND active = 1", (model,)
            ).fetchone()
            if row is not None and row[0] != rollout_id:
                raise RolloutConflictError(
                    f"model {model!r} already has active rollout {row[0]!r}; finish or abort it before "
                    f"starting {rollout_id!r}"
                )
            done = conn.execute(
                "SELECT final_phase FROM rollouts WHERE model = ? AND rollout_id = ? AND active = 0",
                (model, rollout_id),
            ).fetchone()
            if done is not None:
                raise RolloutConflictError(
                    f"rollout {rollout_id!r} of model {model!r} already finished ({done[0]!r}); use a new rollout_id"
                )
            conn.execute(
                """INSERT INTO rollouts (model, rollout_id, strategy, status_json, active, started_at, updated_at)
                   VALUES (?, ?, ?, ?, 1, ?, ?)
                   ON CONFLICT (model, rollout_id)
                   DO UPDATE SET strategy = excluded.strategy, status_json = excluded.status_json,
                                 updated_at = excluded.updated_at""",
                (model, rollout_id, strategy, status_json, now, now),
            )

    def load_active_rollout(self, model: str) -> ActiveRollout | None:
        """(rollout_id, strategy, status_json) of the active rollout of `model`, or None."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT rollout_id, strategy, status_json FROM rollouts WHERE model = ? AND active = 1",
                (model,),
            ).fetchone()
        return ActiveRollout(*row) if row else None

    def finish_rollout(self, model: str, rollout_id: str, final_phase: str) -> None:
        """Mark a rollout finished ('succeeded', 'rolled_back', 'aborted', ...); idempotent.

        Raises:
            UnknownRolloutError: no rollout `rollout_id` for `model`.
        """
        now = self._now()
        with self.transaction() as conn:
            cur = conn.execute(
                """UPDATE rollouts SET active = 0, final_phase = ?, finished_at = ?, updated_at = ?
                   WHERE model = ? AND rollout_id = ? AND active = 1""",
                (final_phase, now, now, model, rollout_id),
            )
            if cur.rowcount == 0:
                known = conn.execute(
                    "SELECT final_phase FROM rollouts WHERE model = ? AND rollout_id = ?", (model, rollout_id)
                ).fetchone()
                if known is None:
                    raise UnknownRolloutError(
                        f"rollout_id {rollout_id!r} is not a rollout of model {model!r}"
                    )

    def record_event(
        self,
        model: str,
        kind: str,
        message: str,
        data: dict[str, Any] | None = None,
        rollout_id: str | None = None,
    ) -> EventRecord:
        """Append an event; `data` must be JSON-serialisable."""
        try:
            data_json = json.dumps(data or {}, sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise RegistryError(f"event data must be JSON-serialisable, got {data!r:.200}: {exc}") from None
        ts = self._now()
        with self.transaction() as conn:
            cur = conn.execute(
                "INSERT INTO events (model, rollout_id, ts, kind, message, data_json) VALUES (?, ?, ?, ?, ?, ?)",
                (model, rollout_id, ts, kind, message, data_json),
            )
            event_id = cur.lastrowid
        assert event_id is not None  # an INSERT into a rowid table always sets it
        return EventRecord(
            id=event_id,
            model=model,
            rollout_id=rollout_id,
            ts=ts,
            kind=kind,
            message=message,
            data=data or {},
        )

    def events(self, model: str, rollout_id: str | None = None, limit: int = 200) -> list[EventRecord]:
        """The newest `limit` events of `model` (of one rollout when `rollout_id` is given), newest first."""
        sql = "SELECT id, model, rollout_id, ts, kind, message, data_json FROM events WHERE model = ?"
        args: list[Any] = [model]
        if rollout_id is not None:
            sql += " AND rollout_id = ?"
            args.append(rollout_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(int(limit))
        with self._read() as conn:
            rows = conn.execute(sql, args).fetchall()
        return [
            EventRecord(id=i, model=m, rollout_id=r, ts=ts, kind=k, message=msg, data=json.loads(d))
            for i, m, r, ts, k, msg, d in rows
        ]
