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


def downgrade() -> None:
    with op.batch_alter_table("team") as batch_op:
        batch_op.drop_constraint("fk_team_captain_id_user", type_="foreignkey")
        batch_op.drop_column("captain_id")
