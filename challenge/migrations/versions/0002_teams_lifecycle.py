"""teams, final selections, baselines, materialized board, announcements, lifecycle transitions

Hand-written. Column adds go through batch_alter_table so that SQLite can apply them. Existing
participations get a team of one each (named after the user), and their submissions move into it.

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import challenge.models

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

UTC = challenge.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "team",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("challenge_id", sa.Integer(), sa.ForeignKey("challenge.id"), nullable=False),
        sa.Column("name", sa.String(length=80), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("submission_counter", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("merged_into_id", sa.Integer(), sa.ForeignKey("team.id"), nullable=True),
        sa.Column("disqualified_at", UTC, nullable=True),
        sa.Column("disqualified_reason", sa.String(length=500), nullable=False, server_default=""),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("challenge_id", "name"),
    )
    op.create_index("ix_team_challenge_id", "team", ["challenge_id"])
    op.create_table(
        "team_member",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("team.id"), nullable=False),
        sa.Column("challenge_id", sa.Integer(), sa.ForeignKey("challenge.id"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("joined_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("challenge_id", "user_id"),
    )
    op.create_index("ix_team_member_team_id", "team_member", ["team_id"])
    op.create_index("ix_team_member_challenge_id", "team_member", ["challenge_id"])
    op.create_index("ix_team_member_user_id", "team_member", ["user_id"])
    op.create_table(
        "team_invitation",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("team.id"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("invited_by", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_team_invitation_team_id", "team_invitation", ["team_id"])
    op.create_index("ix_team_invitation_user_id", "team_invitation", ["user_id"])

    with op.batch_alter_table("challenge") as batch:
        batch.add_column(
            sa.Column("requires_approval", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("email_domains", sa.String(length=500), nullable=False, server_default="")
        )
        batch.add_column(sa.Column("merge_deadline", UTC, nullable=True))
    with op.batch_alter_table("phase") as batch:
        batch.add_column(
            sa.Column("registration_code", sa.String(length=40), nullable=False, server_default="")
        )
        batch.add_column(
            sa.Column("board_version", sa.Integer(), nullable=False, server_default="0")
        )
    with op.batch_alter_table("participation") as batch:
        batch.add_column(
            sa.Column("status", sa.String(length=12), nullable=False, server_default="approved")
        )
    with op.batch_alter_table("submission") as batch:
        batch.add_column(sa.Column("team_id", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("is_final", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch.add_column(
            sa.Column("baseline_label", sa.String(length=80), nullable=False, server_default="")
        )
        batch.create_foreign_key("fk_submission_team_id", "team", ["team_id"], ["id"])
        batch.create_index("ix_submission_team_id", ["team_id"])
        batch.create_index("ix_submission_baseline", ["phase_id", "baseline_label"])

    op.create_table(
        "board_entry",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("phase_id", sa.Integer(), sa.ForeignKey("phase.id"), nullable=False),
        sa.Column("team_id", sa.Integer(), sa.ForeignKey("team.id"), nullable=False),
        sa.Column("submission_id", sa.Integer(), sa.ForeignKey("submission.id"), nullable=False),
        sa.Column("sort_key", sa.Float(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("ci_low", sa.Float(), nullable=True),
        sa.Column("ci_high", sa.Float(), nullable=True),
        sa.Column("submitted_at", UTC, nullable=False),
        sa.Column("entries", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("phase_id", "team_id"),
    )
    op.create_index("ix_board_entry_team_id", "board_entry", ["team_id"])
    op.create_index(
        "ix_board_entry_order",
        "board_entry",
        ["phase_id", "sort_key", "submitted_at", "submission_id"],
    )
    op.create_table(
        "announcement",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("challenge_id", sa.Integer(), sa.ForeignKey("challenge.id"), nullable=False),
        sa.Column("author_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body_md", sa.Text(), nullable=False),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("forum_thread_id", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_announcement_challenge_id", "announcement", ["challenge_id"])
    op.create_index("ix_announcement_created_at", "announcement", ["created_at"])
    op.create_table(
        "phase_transition",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("challenge_id", sa.Integer(), sa.ForeignKey("challenge.id"), nullable=False),
        sa.Column("phase_id", sa.Integer(), sa.ForeignKey("phase.id"), nullable=False),
        sa.Column("kind", sa.String(length=24), nullable=False),
        sa.Column("due_at", UTC, nullable=False),
        sa.Column("done_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("phase_id", "kind"),
    )
    op.create_index("ix_phase_transition_challenge_id", "phase_transition", ["challenge_id"])

    # Every existing participant becomes a team of one; their submissions join that team.
    op.execute(
        """
        INSERT INTO team (challenge_id, name, created_at, submission_counter, disqualified_reason)
        SELECT p.challenge_id, u.username, p.accepted_rules_at, 0, ''
        FROM participation p JOIN "user" u ON u.id = p.user_id
        """
    )
    op.execute(
        """
        INSERT INTO team_member (team_id, challenge_id, user_id, joined_at)
        SELECT t.id, p.challenge_id, p.user_id, p.accepted_rules_at
        FROM participation p JOIN "user" u ON u.id = p.user_id
        JOIN team t ON t.challenge_id = p.challenge_id AND t.name = u.username
        """
    )
    op.execute(
        """
        UPDATE submission SET team_id = (
            SELECT m.team_id FROM team_member m
            WHERE m.challenge_id = submission.challenge_id AND m.user_id = submission.user_id
        )
        """
    )
    # board_entry starts empty: call challenge.leaderboard.rebuild_boards() once per challenge
    # that already has scored submissions (none existed before this revision was released).


def downgrade() -> None:
    op.drop_table("phase_transition")
    op.drop_table("announcement")
    op.drop_table("board_entry")
    with op.batch_alter_table("submission") as batch:
        batch.drop_index("ix_submission_baseline")
        batch.drop_index("ix_submission_team_id")
        batch.drop_constraint("fk_submission_team_id", type_="foreignkey")
        batch.drop_column("baseline_label")
        batch.drop_column("is_final")
        batch.drop_column("team_id")
    with op.batch_alter_table("participation") as batch:
        batch.drop_column("status")
    with op.batch_alter_table("phase") as batch:
        batch.drop_column("board_version")
        batch.drop_column("registration_code")
    with op.batch_alter_table("challenge") as batch:
        batch.drop_column("merge_deadline")
        batch.drop_column("email_domains")
        batch.drop_column("requires_approval")
    op.drop_table("team_invitation")
    op.drop_table("team_member")
    op.drop_table("team")
