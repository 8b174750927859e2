"""offer state ranker scores: the serving learned ranker's calibrated propensities and reasons, stored with the state

Revision ID: e2c0ffee0021
Revises: e3c0ffee0020
Create Date: 2026-12-06 05:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "e2c0ffee0021"
down_revision: str | None = "e3c0ffee0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("customer_offer_state", sa.Column("ranker_version", sa.Integer(), nullable=True))
    op.add_column("customer_offer_state", sa.Column("ranker_products", postgresql.ARRAY(sa.Text()), nullable=True))
    op.add_column(
        "customer_offer_state",
        sa.Column("ranker_propensities", postgresql.ARRAY(sa.Float(precision=53)), nullable=True),
    )
    op.add_column("customer_offer_state", sa.Column("ranker_reasons", postgresql.ARRAY(sa.Text()), nullable=True))


def downgrade() -> None:
    for column in ("ranker_reasons", "ranker_propensities", "ranker_products", "ranker_version"):
        op.drop_column("customer_offer_state", column)
