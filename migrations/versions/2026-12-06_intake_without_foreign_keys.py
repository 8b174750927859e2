"""retier marks and daily activity rollups without a foreign key: each check was a trigger call per row in every
event intake (the intake holds the customers' rows itself; erasure deletes both; the re-tiering batch drops the marks
of customers that are gone)

Revision ID: a6c0ffee0033
Revises: a8c0ffee0035
Create Date: 2026-12-06 11:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a6c0ffee0033"
down_revision: str | None = "a8c0ffee0035"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_retier_mark_customer_id_customer", "retier_mark", type_="foreignkey")
    op.drop_constraint("fk_customer_activity_daily_customer_id_customer", "customer_activity_daily", type_="foreignkey")


def downgrade() -> None:
    op.execute(
        "DELETE FROM customer_activity_daily d WHERE NOT EXISTS (SELECT 1 FROM customer c WHERE c.id = d.customer_id)"
    )
    op.create_foreign_key(
        "fk_customer_activity_daily_customer_id_customer",
        "customer_activity_daily",
        "customer",
        ["customer_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.execute("DELETE FROM retier_mark m WHERE NOT EXISTS (SELECT 1 FROM customer c WHERE c.id = m.customer_id)")
    op.create_foreign_key(
        "fk_retier_mark_customer_id_customer", "retier_mark", "customer", ["customer_id"], ["id"], ondelete="CASCADE"
    )
