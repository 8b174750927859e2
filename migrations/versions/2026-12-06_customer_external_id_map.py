"""customer_external_id: the external ids held unique by a table of their own; a plain index on
customer.external_id

Revision ID: c7c0ffee0052
Revises: c6c0ffee0051
Create Date: 2026-12-06

Ready for distribution by the customer's id (README, "Scaling"; tests/test_citus_ready.py): under Citus a unique
index must hold the distribution column, so customer.external_id cannot be unique there. Its uniqueness moves to
customer_external_id (external_id primary key, customer_id), filled here with every customer row (an erased row's
random id too), which every writer of an external id keeps true in the same transaction. Lookups on Postgres keep
reading customer.external_id, by a plain index. The downgrade restores the unique constraint (the map kept the ids
unique) and drops the map.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c7c0ffee0052"
down_revision: str | None = "c6c0ffee0051"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_external_id",
        sa.Column("external_id", sa.String(length=64), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("external_id", name=op.f("pk_customer_external_id")),
    )
    op.execute("INSERT INTO customer_external_id (external_id, customer_id) SELECT external_id, id FROM customer")
    op.create_index(op.f("ix_customer_external_id"), "customer", ["external_id"])
    op.drop_constraint("uq_customer_external_id", "customer", type_="unique")


def downgrade() -> None:
    op.create_unique_constraint("uq_customer_external_id", "customer", ["external_id"])
    op.drop_index(op.f("ix_customer_external_id"), table_name="customer")
    op.drop_table("customer_external_id")
