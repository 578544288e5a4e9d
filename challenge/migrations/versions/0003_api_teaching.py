"""EvalAI large uploads, classrooms, class terms and rosters

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-23 19:30:00

Written by hand: it holds only the API and teaching tables. It branches from 0001 beside 0002
(teams and lifecycle); ``migrate()`` upgrades every head.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import challenge.models

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, challenge.models.UTCDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "evalai_upload",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("challenge_id", sa.Integer(), sa.ForeignKey("challenge.id"), nullable=False),
        sa.Column("phase_id", sa.Integer(), sa.ForeignKey("phase.id"), nullable=False),
        sa.Column("filename", sa.String(length=255), nullable=False),
        sa.Column("message", sa.String(length=500), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("parts", sa.Integer(), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        sa.Column("submission_id", sa.Integer(), sa.ForeignKey("submission.id"), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_hash"),
    )
    op.create_index("ix_evalai_upload_user_id", "evalai_upload", ["user_id"])
    op.create_index("ix_evalai_upload_challenge_id", "evalai_upload", ["challenge_id"])

    op.create_table(
        "classroom",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("challenge_id", sa.Integer(), sa.ForeignKey("challenge.id"), nullable=False),
        sa.Column(
            "source_challenge_id", sa.Integer(), sa.ForeignKey("challenge.id"), nullable=False
        ),
        sa.Column("instructor_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("invite_code", sa.String(length=40), nullable=False),
        sa.Column("term", sa.Integer(), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("grade_rule", sa.JSON(), nullable=False),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("challenge_id"),
        sa.UniqueConstraint("invite_code"),
    )
    op.create_index("ix_classroom_source_challenge_id", "classroom", ["source_challenge_id"])
    op.create_index("ix_classroom_instructor_id", "classroom", ["instructor_id"])

    op.create_table(
        "class_term",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("classroom_id", sa.Integer(), sa.ForeignKey("classroom.id"), nullable=False),
        sa.Column("term", sa.Integer(), nullable=False),
        sa.Column("data_seed", sa.Integer(), nullable=False),
        sa.Column("phase_ids", sa.JSON(), nullable=False),
        _ts("started_at"),
        _ts("archived_at", nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("classroom_id", "term"),
    )
    op.create_index("ix_class_term_classroom_id", "class_term", ["classroom_id"])

    op.create_table(
        "class_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("classroom_id", sa.Integer(), sa.ForeignKey("classroom.id"), nullable=False),
        sa.Column("term", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        _ts("joined_at"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("classroom_id", "term", "user_id"),
    )
    op.create_index("ix_class_member_classroom_id", "class_member", ["classroom_id"])
    op.create_index("ix_class_member_user_id", "class_member", ["user_id"])


def downgrade() -> None:
    for table in ("class_member", "class_term", "classroom", "evalai_upload"):
        op.drop_table(table)
