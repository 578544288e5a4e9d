"""Audit events say what an admin's override of a holdout-ledger refusal published, and its rows

Revision ID: 0007_ledger
Revises: 0007_accounts
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_ledger"
# After 0007_reveal, which creates the audit_event table these columns are added to.
down_revision: str | Sequence[str] | None = "0007_accounts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_event") as batch_op:
        batch_op.add_column(
            sa.Column("target", sa.String(500), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_event") as batch_op:
        batch_op.drop_column("details")
        batch_op.drop_column("target")
