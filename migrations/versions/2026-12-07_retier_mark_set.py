"""retier mark sets: the customers one NDJSON import statement wrote, marked for the re-tiering worker as one row
(their ids) instead of a retier_mark row each; the worker expands a set into retier_mark rows

Revision ID: d1c0ffee0057
Revises: d0c0ffee0056
Create Date: 2026-12-07 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d1c0ffee0057"
down_revision: str | None = "d0c0ffee0056"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "retier_mark_set",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("customer_ids", postgresql.ARRAY(sa.BigInteger()), nullable=False),
        sa.Column("scope", sa.String(length=10), nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("scope IN ('activity', 'any')", name=op.f("ck_retier_mark_set_scope")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retier_mark_set")),
    )


def downgrade() -> None:
    # the sets' customers keep their marks, one row each, as before the sets
    op.execute(
        "INSERT INTO retier_mark (customer_id, scope, marked_at) "
        "SELECT DISTINCT ON (customer_id, scope) customer_id, scope, marked_at "
        "FROM (SELECT unnest(customer_ids) AS customer_id, scope, marked_at FROM retier_mark_set) s "
        "ORDER BY customer_id, scope, marked_at ON CONFLICT (customer_id, scope) DO UPDATE "
        "SET marked_at = least(retier_mark.marked_at, excluded.marked_at)"
    )
    op.drop_table("retier_mark_set")
