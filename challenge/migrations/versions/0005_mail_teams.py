"""Team captains; the e-mail outbox and per-kind opt-outs

Revision ID: 0005_mail_teams
Revises: 0004_variants
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_mail_teams"
down_revision: str | Sequence[str] | None = "0004_variants"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = "0002"  # the team table (another branch)


def upgrade() -> None:
    with op.batch_alter_table("team") as batch_op:
        batch_op.add_column(sa.Column("captain_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key("fk_team_captain_id_user", "user", ["captain_id"], ["id"])
    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("dedupe_key", sa.String(160), nullable=False, unique=True),
        sa.Column("to_addr", sa.String(254), nullable=False),
        sa.Column("subject", sa.String(250), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
    )
    op.create_index("ix_mail_outbox_user_id", "mail_outbox", ["user_id"])
    op.create_index("ix_mail_outbox_state", "mail_outbox", ["state"])
    op.create_table(
        "mail_opt_out",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.UniqueConstraint("user_id", "kind"),
    )
    op.create_index("ix_mail_opt_out_user_id", "mail_opt_out", ["user_id"])


def downgrade() -> None:
    op.drop_table("mail_opt_out")
    op.drop_table("mail_outbox")
    with op.batch_alter_table("team") as batch_op:
        batch_op.drop_constraint("fk_team_captain_id_user", type_="foreignkey")
        batch_op.drop_column("captain_id")
