"""customer offer state: what the candidate filter needs of a customer, kept until it can change

A recommendation computed the customer's features and every product's eligibility on every request: half of its
statement's time in Postgres. The state holds the result, with the versions and the instant it stays valid for;
writes to a customer mark it stale in their own transaction (app/recommendations/offer_state.py). UNLOGGED: a
cache of what the customer's data already says, which a crash may empty.

Revision ID: b1c0ffee0011
Revises: b0c0ffee0010
Create Date: 2026-12-01 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b1c0ffee0011"
down_revision: str | None = "b0c0ffee0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_offer_state",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("generation", sa.BigInteger(), nullable=False),
        sa.Column("valid_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("catalog_version", sa.BigInteger(), nullable=True),
        sa.Column("risk_valid_days", sa.Integer(), nullable=True),
        sa.Column("held_products", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("risk_tolerance", sa.SmallInteger(), nullable=True),
        sa.Column("marketing_consent", sa.Boolean(), nullable=True),
        sa.Column("ineligible", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("explanation", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("reads", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_offer_state")),
        prefixes=["UNLOGGED"],
    )


def downgrade() -> None:
    op.drop_table("customer_offer_state")
