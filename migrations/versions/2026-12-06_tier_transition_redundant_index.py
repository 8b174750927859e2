"""tier transition: the index on (customer_id, id) dropped, the primary key (customer_id, id, at) serves the same
lookups (a customer's transitions in id order, from a cursor)

Revision ID: a8c0ffee0035
Revises: a5c0ffee0032
Create Date: 2026-12-06

Since the table is partitioned by `at` its primary key leads with (customer_id, id), so the second index repeated
it: every transition paid two B-tree insertions for one lookup path (a first night of the balances feed writes one
transition per customer and policy: 4 million at a million customers). Dropped on the partitioned table, which
drops it on every partition; the downgrade creates it again.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a8c0ffee0035"
down_revision: str | None = "a5c0ffee0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_tier_transition_customer", table_name="tier_transition")


def downgrade() -> None:
    op.create_index("ix_tier_transition_customer", "tier_transition", ["customer_id", "id"], unique=False)
