"""Predictions and their feedback (labels, business outcomes) for canary and A/B analysis.

Hot path: the ingress records every prediction. Each call is one short transaction on one
indexed table; `record_predictions` batches many rows into one.
"""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from serving.registry.db import Database
from serving.registry.errors import RegistryError, UnknownRequestError
from serving.registry.records import FeedbackStats, PredictionRow
from serving.registry.schema import predictions


class FeedbackStore(Database):
    """Mixin of `Registry`."""

    def record_prediction(
        self, request_id: str, model: str, version: str, label_predicted: str, user_id: str | None, ts: float
    ) -> None:
        self.record_predictions([PredictionRow(request_id, model, version, label_predicted, user_id, ts)])

    def record_predictions(self, rows: Iterable[PredictionRow | tuple]) -> None:
        """Insert many predictions in one transaction; rows are `PredictionRow`s or tuples in its order.

        A request_id is unique by construction (the ingress makes a uuid4), so a repeat is a
        client retry of the same request: the first write wins and the repeat is ignored.
        """
        named = [PredictionRow(*row)._asdict() for row in rows]
        if not named:
            return
        with self._append() as conn:
            self._upsert(conn, predictions, named, ["request_id"])

    def record_feedback(
        self, request_id: str, label: str | None = None, outcome: int | None = None, ts: float | None = None
    ) -> None:
        """Attach a true label and/or a 0/1 outcome to a recorded prediction; later feedback overrides.

        Raises:
            RegistryError: neither label nor outcome, or outcome not 0/1.
            UnknownRequestError: no prediction was recorded under `request_id`.
        """
        if label is None and outcome is None:
            raise RegistryError(
                f"feedback for request_id {request_id!r} needs a label or an outcome, got neither"
            )
        if outcome is not None and (isinstance(outcome, bool) or outcome not in (0, 1)):
            raise RegistryError(f"outcome must be 0 or 1, got {outcome!r} for request_id {request_id!r}")
        changes: dict[str, object] = {"feedback_ts": self._now() if ts is None else ts}
        if label is not None:
            changes["label"] = label
        if outcome is not None:
            changes["outcome"] = outcome
        with self._append() as conn:
            cur = conn.execute(predictions.update().where(predictions.c.request_id == request_id).values(changes))
            if cur.rowcount == 0:
                raise UnknownRequestError(f"request_id {request_id!r} has no recorded prediction")

    def feedback_stats(self, model: str, version: str, since_ts: float = 0.0) -> FeedbackStats:
        """Counts over predictions of `model`/`version` made at or after `since_ts`.

        labelled/correct: predictions with a true label / whose label matched the prediction;
        outcome_trials/outcome_successes: predictions with an outcome / with outcome 1.
        """
        p = predictions.c
        correct = sa.case((p.label == p.label_predicted, 1), else_=0)
        query = sa.select(
            sa.func.count(p.label),
            sa.func.coalesce(sa.func.sum(correct), 0),
            sa.func.count(p.outcome),
            sa.func.coalesce(sa.func.sum(p.outcome), 0),
        ).where(p.model == model, p.version == version, p.ts >= since_ts)
        with self._read() as conn:
            row = conn.execute(query).one()
        return FeedbackStats(*(int(x) for x in row))
