"""scoring: results_recorded / score_version on submissions, rescore runs and their results

Hand-written. Column adds go through batch_alter_table so that SQLite can apply them.

Revision ID: 0003_rescoring
Revises: 0002
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import challenge.models

revision: str = "0003_rescoring"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = challenge.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("submission") as batch:
        batch.add_column(
            sa.Column("results_recorded", sa.Integer(), nullable=False, server_default="0")
        )
        batch.add_column(sa.Column("score_version", sa.Integer(), nullable=False, server_default="0"))
    # Submissions finished before this revision were recorded once.
    op.execute(
        "UPDATE submission SET results_recorded = 1 "
        "WHERE status IN ('scored', 'invalid', 'error')"
    )
    op.create_table(
        "rescore_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("challenge_id", sa.Integer(), sa.ForeignKey("challenge.id"), nullable=False),
        sa.Column("phase_id", sa.Integer(), sa.ForeignKey("phase.id"), nullable=True),
        sa.Column("submission_id", sa.Integer(), sa.ForeignKey("submission.id"), nullable=True),
        sa.Column("requested_by", sa.Integer(), sa.ForeignKey("user.id"), nullable=True),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("finished_at", UTC, nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_rescore_run_challenge_id", "rescore_run", ["challenge_id"])
    op.create_index("ix_rescore_run_state", "rescore_run", ["state"])
    op.create_table(
        "rescore_result",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("rescore_run.id"), nullable=False),
        sa.Column("submission_id", sa.Integer(), sa.ForeignKey("submission.id"), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("enqueued_at", UTC, nullable=True),
        sa.Column("started_at", UTC, nullable=True),
        sa.Column("public_score", sa.Float(), nullable=True),
        sa.Column("private_score", sa.Float(), nullable=True),
        sa.Column("public_ci_low", sa.Float(), nullable=True),
        sa.Column("public_ci_high", sa.Float(), nullable=True),
        sa.Column("private_ci_low", sa.Float(), nullable=True),
        sa.Column("private_ci_high", sa.Float(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=False),
        sa.Column("error_detail", sa.Text(), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "submission_id"),
    )
    op.create_index("ix_rescore_result_run_id", "rescore_result", ["run_id"])
    op.create_index("ix_rescore_result_submission_id", "rescore_result", ["submission_id"])


def downgrade() -> None:
    op.drop_table("rescore_result")
    op.drop_table("rescore_run")
    with op.batch_alter_table("submission") as batch:
        batch.drop_column("score_version")
        batch.drop_column("results_recorded")
