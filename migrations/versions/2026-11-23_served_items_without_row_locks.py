"""served items: no foreign keys to customer and product (the list holds the customer; products are never deleted)

Each served item's two foreign keys locked a row (FOR KEY SHARE) when it was written: its customer's, which the
item's list already references, and its product's, one of the same few catalog rows for every list served.
They cost about a quarter of storing a served list (bench/HISTORY.md).

Revision ID: a8c0ffee0008
Revises: a7c0ffee0007
Create Date: 2026-11-23 06:30:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a8c0ffee0008"
down_revision: str | None = "a7c0ffee0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_recommendation_item_customer_id_customer", "recommendation_item", type_="foreignkey")
    op.drop_constraint("fk_recommendation_item_product_code_product", "recommendation_item", type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key(
        "fk_recommendation_item_product_code_product", "recommendation_item", "product", ["product_code"], ["code"]
    )
    op.create_foreign_key(
        "fk_recommendation_item_customer_id_customer",
        "recommendation_item",
        "customer",
        ["customer_id"],
        ["id"],
        ondelete="CASCADE",
    )
