"""Predictions and their feedback (labels, business outcomes) for canary and A/B analysis.

Hot path: the ingress records every prediction. Each call is one short transaction on one
indexed table; `record_predictions` batches many rows into one.
"""

from __future__ import annotations

from collections.abc import Iterable

from serving.registry.db import Database
from serving.registry.errors import RegistryError, UnknownRequestError
from serving.registry.records import FeedbackStats, PredictionRow

# A request_id is unique by construction (the ingress makes a uuid4), so a repeat is a client
# retry of the same request: the first write wins and the repeat is ignored.
_INSERT = """INSERT INTO predictions (request_id, model, version, label_predicted, user_id, ts)
             VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (request_id) DO NOTHING"""


class FeedbackStore(Database):
    """Mixin of `Registry`."""

    def record_prediction(
        self, request_id: str, model: str, version: str, label_predicted: str, user_id: str | None, ts: float
    ) -> None:
        with self.transaction() as conn:
            conn.execute(_INSERT, (request_id, model, version, label_predicted, user_id, ts))

    def record_predictions(self, rows: Iterable[PredictionRow | tuple]) -> None:
        """Insert many predictions in one transaction; rows are `PredictionRow`s or tuples in its order."""
        with self.transaction() as conn:
            conn.executemany(_INSERT, rows)

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
        with self.transaction() as conn:
            cur = conn.execute(
                """UPDATE predictions SET label = COALESCE(?, label), outcome = COALESCE(?, outcome),
                   feedback_ts = ? WHERE request_id = ?""",
                (label, outcome, self._now() if ts is None else ts, request_id),
            )
            if cur.rowcount == 0:
                raise UnknownRequestError(f"request_id {request_id!r} has no recorded prediction")

    def feedback_stats(self, model: str, version: str, since_ts: float = 0.0) -> FeedbackStats:
        """Counts over predictions of `model`/`version` made at or after `since_ts`.

        labelled/correct: predictions with a true label / whose label matched the prediction;
        outcome_trials/outcome_successes: predictions with an outcome / with outcome 1.
        """
        with self._read() as conn:
            row = conn.execute(
                """SELECT COUNT(label), COALESCE(SUM(label = label_predicted), 0),
                          COUNT(outcome), COALESCE(SUM(outcome), 0)
                   FROM predictions WHERE model = ? AND version = ? AND ts >= ?""",
                (model, version, since_ts),
            ).fetchone()
        return FeedbackStats(*(int(x) for x in row))
