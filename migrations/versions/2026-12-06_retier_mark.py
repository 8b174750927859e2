"""retier marks: customers whose tiers an intake made stale, re-tiered by the worker in micro-batches

Revision ID: e3c0ffee0020
Revises: e1c0ffee0019
Create Date: 2026-12-06 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "e3c0ffee0020"
down_revision: str | None = "e1c0ffee0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retier_mark",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("scope IN ('activity', 'any')", name=op.f("ck_retier_mark_scope")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_retier_mark_customer_id_customer"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("customer_id", "scope", name=op.f("pk_retier_mark")),
    )
    op.create_index("ix_retier_mark_marked_at", "retier_mark", ["marked_at"])


def downgrade() -> None:
    op.drop_index("ix_retier_mark_marked_at", table_name="retier_mark")
    op.drop_table("retier_mark")
