"""The schema of the pre-alembic SQLite registry at user_version 1, for both backends.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# INTEGER PRIMARY KEY is SQLite's rowid alias (what AUTOINCREMENT needs); BIGSERIAL on PostgreSQL.
ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _json(column: str) -> sa.CheckConstraint:
    # Both engines refuse text that is not JSON: SQLite's json_valid, PostgreSQL's jsonb cast.
    if op.get_context().dialect.name == "sqlite":
        return sa.CheckConstraint(f"json_valid({column})")
    return sa.CheckConstraint(f"({column})::jsonb IS NOT NULL")


def upgrade() -> None:
    op.create_table(
        "versions",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("card_json", sa.Text, nullable=False),
        sa.Column("weights_sha256", sa.Text, nullable=False),
        sa.Column("registered_at", sa.Double, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.PrimaryKeyConstraint("model", "version"),
        _json("card_json"),
        sa.CheckConstraint("status IN ('available', 'pruned')"),
    )
    op.create_table(
        "deployments",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("traffic_json", sa.Text, nullable=False),
        sa.Column("previous_json", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("actor", sa.Text, nullable=False),
        _json("traffic_json"),
        _json("previous_json"),
        sqlite_autoincrement=True,
    )
    op.create_index("deployments_by_model", "deployments", ["model", "id"])
    op.create_table(
        "shadows",
        sa.Column("model", sa.Text, primary_key=True),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("share", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.CheckConstraint("share > 0 AND share <= 100"),
    )
    op.create_table(
        "rollouts",
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("rollout_id", sa.Text, nullable=False),
        sa.Column("strategy", sa.Text, nullable=False),
        sa.Column("status_json", sa.Text, nullable=False),
        sa.Column("active", sa.Integer, nullable=False),
        sa.Column("final_phase", sa.Text),
        sa.Column("started_at", sa.Double, nullable=False),
        sa.Column("updated_at", sa.Double, nullable=False),
        sa.Column("finished_at", sa.Double),
        sa.PrimaryKeyConstraint("model", "rollout_id"),
        _json("status_json"),
        sa.CheckConstraint("active IN (0, 1)"),
    )
    # At most one active rollout per model, enforced by the database, not by politeness.
    one_active = sa.text("active = 1")
    op.create_index(
        "rollouts_one_active", "rollouts", ["model"], unique=True, sqlite_where=one_active, postgresql_where=one_active
    )
    op.create_table(
        "events",
        sa.Column("id", ID, primary_key=True, autoincrement=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("rollout_id", sa.Text),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("data_json", sa.Text, nullable=False),
        _json("data_json"),
        sqlite_autoincrement=True,
    )
    op.create_index("events_by_model", "events", ["model", "id"])
    op.create_index("events_by_rollout", "events", ["model", "rollout_id", "id"])
    op.create_table(
        "predictions",
        sa.Column("request_id", sa.Text, primary_key=True),
        sa.Column("model", sa.Text, nullable=False),
        sa.Column("version", sa.Text, nullable=False),
        sa.Column("label_predicted", sa.Text, nullable=False),
        sa.Column("user_id", sa.Text),
        sa.Column("ts", sa.Double, nullable=False),
        sa.Column("label", sa.Text),
        sa.Column("outcome", sa.Integer),
        sa.Column("feedback_ts", sa.Double),
        sa.CheckConstraint("outcome IN (0, 1)"),
    )
    # feedback_stats filters on exactly these columns.
    op.create_index("predictions_by_version", "predictions", ["model", "version", "ts"])


def downgrade() -> None:
    for table in ("predictions", "events", "rollouts", "shadows", "deployments", "versions"):
        op.drop_table(table)
