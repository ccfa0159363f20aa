"""Rollout state and events: what a restarted rollout controller needs to resume."""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa

from serving.registry.db import Database
from serving.registry.errors import RegistryError, RolloutConflictError, UnknownRolloutError
from serving.registry.records import ActiveRollout, EventRecord
from serving.registry.schema import events, rollouts

_ACTIVE_COLUMNS = (rollouts.c.rollout_id, rollouts.c.strategy, rollouts.c.status_json)


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
            active = conn.execute(
                sa.select(rollouts.c.rollout_id).where(rollouts.c.model == model, rollouts.c.active == 1)
            ).scalar()
            if active is not None and active != rollout_id:
                raise RolloutConflictError(
                    f"model {model!r} already has active rollout {active!r}; finish or abort it before "
                    f"starting {rollout_id!r}"
                )
            done = conn.execute(
                sa.select(rollouts.c.final_phase).where(
                    rollouts.c.model == model, rollouts.c.rollout_id == rollout_id, rollouts.c.active == 0
                )
            ).first()
            if done is not None:
                raise RolloutConflictError(
                    f"rollout {rollout_id!r} of model {model!r} already finished ({done[0]!r}); use a new rollout_id"
                )
            row = {"model": model, "rollout_id": rollout_id, "strategy": strategy, "status_json": status_json,
                   "active": 1, "started_at": now, "updated_at": now}
            self._upsert(conn, rollouts, row, ["model", "rollout_id"], ["strategy", "status_json", "updated_at"])

    def load_active_rollout(self, model: str) -> ActiveRollout | None:
        """(rollout_id, strategy, status_json) of the active rollout of `model`, or None."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(*_ACTIVE_COLUMNS).where(rollouts.c.model == model, rollouts.c.active == 1)
            ).first()
        return ActiveRollout(*row) if row else None

    def finish_rollout(self, model: str, rollout_id: str, final_phase: str) -> None:
        """Mark a rollout finished ('succeeded', 'rolled_back', 'aborted', ...); idempotent.

        Raises:
            UnknownRolloutError: no rollout `rollout_id` for `model`.
        """
        now = self._now()
        with self.transaction() as conn:
            this = sa.and_(rollouts.c.model == model, rollouts.c.rollout_id == rollout_id)
            cur = conn.execute(
                rollouts.update()
                .where(this, rollouts.c.active == 1)
                .values(active=0, final_phase=final_phase, finished_at=now, updated_at=now)
            )
            if cur.rowcount == 0:
                known = conn.execute(sa.select(rollouts.c.final_phase).where(this)).first()
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
                events.insert().values(
                    model=model, rollout_id=rollout_id, ts=ts, kind=kind, message=message, data_json=data_json
                )
            )
            event_id = int(cur.inserted_primary_key[0])
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
        query = sa.select(events).where(events.c.model == model)
        if rollout_id is not None:
            query = query.where(events.c.rollout_id == rollout_id)
        with self._read() as conn:
            rows = conn.execute(query.order_by(events.c.id.desc()).limit(int(limit))).all()
        return [
            EventRecord(id=i, model=m, rollout_id=r, ts=ts, kind=k, message=msg, data=json.loads(d))
            for i, m, r, ts, k, msg, d in rows
        ]
