"""Server-side sessions, e-mailed account tokens, the account audit log, look-alike name keys and
confirmed e-mail addresses

Revision ID: 0007_accounts
Revises: 0007_codabench
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_accounts"
down_revision: str | Sequence[str] | None = "0007_codabench"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    from challenge.usernames import username_key

    with op.batch_alter_table("user") as batch_op:
        batch_op.add_column(
            sa.Column("username_key", sa.String(120), nullable=False, server_default="")
        )
        batch_op.add_column(sa.Column("confirmed_at", sa.DateTime(timezone=True), nullable=True))
    conn = op.get_bind()
    user = sa.table(
        "user",
        sa.column("id", sa.Integer),
        sa.column("username", sa.String),
        sa.column("username_key", sa.String),
        sa.column("created_at", sa.DateTime(timezone=True)),
        sa.column("confirmed_at", sa.DateTime(timezone=True)),
    )
    # Existing accounts keep their names; of two existing look-alikes the later one gets a key
    # of its own (so the unique index can be built), and new look-alikes of either are refused.
    seen: set[str] = set()
    for uid, name in conn.execute(sa.select(user.c.id, user.c.username).order_by(user.c.id)):
        key = username_key(name)
        if key in seen:
            key = f"{key}#{uid}"
        seen.add(key)
        conn.execute(sa.update(user).where(user.c.id == uid).values(username_key=key))
    conn.execute(sa.update(user).values(confirmed_at=user.c.created_at))
    with op.batch_alter_table("user") as batch_op:
        batch_op.create_index("ix_user_username_key", ["username_key"], unique=True)

    op.create_table(
        "user_session",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("user_agent", sa.String(200), nullable=False),
    )
    op.create_index("ix_user_session_user_id", "user_session", ["user_id"])
    op.create_table(
        "account_token",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("kind", sa.String(12), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_account_token_user_id", "account_token", ["user_id"])
    op.create_table(
        "account_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("actor_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=True),
        sa.Column("kind", sa.String(30), nullable=False),
        sa.Column("detail", sa.String(200), nullable=False),
        sa.Column("ip", sa.String(45), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_account_event_user_id", "account_event", ["user_id"])


def downgrade() -> None:
    op.drop_table("account_event")
    op.drop_table("account_token")
    op.drop_table("user_session")
    with op.batch_alter_table("user") as batch_op:
        batch_op.drop_index("ix_user_username_key")
        batch_op.drop_column("confirmed_at")
        batch_op.drop_column("username_key")
