"""forum_thread.version: bumped by every write that changes a thread's pages (page cache key)

Revision ID: f0002
Revises: f0001
Create Date: 2026-11-29 17:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "f0002"
down_revision: str | Sequence[str] | None = "f0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("forum_thread", schema=None) as batch_op:
        batch_op.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("forum_thread", schema=None) as batch_op:
        batch_op.drop_column("version")
