"""tier transitions: a BRIN index on `at` for the migration report, in place of the B-tree on (policy_id, at)

Transitions are appended in time order; the B-tree cost a fifth of each insert (a policy's first run writes one
per customer), the BRIN index next to nothing.

Revision ID: a7c0ffee0007
Revises: a6c0ffee0006
Create Date: 2026-11-23 05:00:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a7c0ffee0007"
down_revision: str | None = "a6c0ffee0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_tier_transition_policy_at", table_name="tier_transition")
    op.create_index("ix_tier_transition_at", "tier_transition", ["at"], unique=False, postgresql_using="brin")


def downgrade() -> None:
    op.drop_index("ix_tier_transition_at", table_name="tier_transition", postgresql_using="brin")
    op.create_index("ix_tier_transition_policy_at", "tier_transition", ["policy_id", "at"], unique=False)
