"""Merge the two heads of the challenge branch (0003_rescoring line and 0005_mail_teams line)

Revision ID: 0006_merge
Revises: 0003_rescoring, 0005_mail_teams
"""

from collections.abc import Sequence

revision: str = "0006_merge"
down_revision: str | Sequence[str] | None = ("0003_rescoring", "0005_mail_teams")
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to change: the revision only joins the two lines into one head."""


def downgrade() -> None:
    """Nothing to undo."""
