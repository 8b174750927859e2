"""served lists: the two indexes no statement reads dropped, (customer_id, served_at) on the lists and
(customer_id, product_code) on their items

Revision ID: c1c0ffee0046
Revises: b5c0ffee0045
Create Date: 2026-12-06

Every GET recommendations stores its list and its items (about 5) in one statement, and each B-tree of those
tables takes one insertion a row: 17 a list with both indexes, 11 without them. What reads the served lists is the
feedback intake (an item by its recommendation_id, then its list by (customer_id, id): the primary key's prefix) and
an erasure (a customer's items: the primary key's prefix, customer_id); nothing reads a customer's lists in time
order or a customer's items by product. Dropped on the partitioned tables, which drops them on every partition;
the downgrade creates them again (on every partition).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c1c0ffee0046"
down_revision: str | None = "b5c0ffee0045"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_recommendation_item_customer", table_name="recommendation_item")
    op.drop_index("ix_recommendation_list_customer", table_name="recommendation_list")


def downgrade() -> None:
    op.create_index("ix_recommendation_list_customer", "recommendation_list", ["customer_id", "served_at"])
    op.create_index("ix_recommendation_item_customer", "recommendation_item", ["customer_id", "product_code"])
