"""holding_balance indexed by as_of: the day of the last holdings report (max(as_of), which the learned ranker's
scoring and training read) from the index's end instead of a scan of every balance

Revision ID: cac0ffee0055
Revises: c7c0ffee0052
Create Date: 2026-12-06 23:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "cac0ffee0055"
down_revision: str | None = "c7c0ffee0052"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_holding_balance_as_of", "holding_balance", ["as_of"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_holding_balance_as_of", table_name="holding_balance")
