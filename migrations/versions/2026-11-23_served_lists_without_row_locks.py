"""served lists: no foreign keys (list to customer, item to list) and no index of items by list

A served list and its items are written by one statement (app/recommendations/served.py, _RECORD) that takes the
list's id from the sequence and the customer's id from the request's own read, and customers and lists are never
deleted (erasure anonymises a customer's row). The two keys checked nothing that statement could get wrong, yet
each locked a row on every list served (FOR KEY SHARE: the customer's, and the list just inserted), dirtying the
customer's page and writing WAL; together with the index only their cascades read, they were about a third of
storing a list (bench/HISTORY.md).

Revision ID: b0c0ffee0010
Revises: a9c0ffee0009
Create Date: 2026-11-23 08:10:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b0c0ffee0010"
down_revision: str | None = "a9c0ffee0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_constraint("fk_recommendation_item_list_id_recommendation_list", "recommendation_item", type_="foreignkey")
    op.drop_index("ix_recommendation_item_list_id", table_name="recommendation_item")
    op.drop_constraint("fk_recommendation_list_customer_id_customer", "recommendation_list", type_="foreignkey")


def downgrade() -> None:
    op.create_foreign_key(
        "fk_recommendation_list_customer_id_customer",
        "recommendation_list",
        "customer",
        ["customer_id"],
        ["id"],
        ondelete="CASCADE",
    )
    op.create_index("ix_recommendation_item_list_id", "recommendation_item", ["list_id"], unique=False)
    op.create_foreign_key(
        "fk_recommendation_item_list_id_recommendation_list",
        "recommendation_item",
        "recommendation_list",
        ["list_id"],
        ["id"],
        ondelete="CASCADE",
    )
