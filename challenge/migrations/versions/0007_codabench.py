"""Code challenges from Codabench bundles: challenge kind and task layout, phase budgets,
per-column scores and the run log of a submission

Revision ID: 0007_codabench
Revises: 0007_reveal
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_codabench"
down_revision: str | Sequence[str] | None = "0007_reveal"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("challenge") as batch_op:
        batch_op.add_column(
            sa.Column("kind", sa.String(12), nullable=False, server_default="files")
        )
        batch_op.add_column(
            sa.Column("codabench", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("phase") as batch_op:
        batch_op.add_column(
            sa.Column("budget", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
    with op.batch_alter_table("submission") as batch_op:
        batch_op.add_column(
            sa.Column("scores", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )
        batch_op.add_column(
            sa.Column("run_log", sa.JSON(), nullable=False, server_default=sa.text("'{}'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("submission") as batch_op:
        batch_op.drop_column("run_log")
        batch_op.drop_column("scores")
    with op.batch_alter_table("phase") as batch_op:
        batch_op.drop_column("budget")
    with op.batch_alter_table("challenge") as batch_op:
        batch_op.drop_column("codabench")
        batch_op.drop_column("kind")
