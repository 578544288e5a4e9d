"""Bundle variants published as extra training files

Revision ID: 0004_variants
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_variants"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("challenge") as batch_op:
        batch_op.add_column(sa.Column("variants", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("challenge") as batch_op:
        batch_op.drop_column("variants")
