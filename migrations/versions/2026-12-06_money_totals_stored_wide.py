"""a day's AUM and a day's transaction amount stored as totals (30 digits), not as one amount (18)

Revision ID: b5c0ffee0045
Revises: b4c0ffee0044
Create Date: 2026-12-06

customer_aum_daily.aum sums a customer's balances (up to 200 holdings, each up to 16 digits before the point) and
customer_activity_daily.txn_amount a day's event amounts; both were numeric(18, 2), one amount's width, so a
holdings PUT whose balances were each valid but summed past 10^16 failed with "numeric field overflow" (answered
422 "a number out of range" for a request its schema allows: schemathesis, 2026-12-06). They become numeric(30, 2),
the published MoneyTotal's 30 digits. Raising a numeric's precision at the same scale rewrites no row. The
customer_features view reads both columns, so it and its two functions are dropped first and made again as they
were (FEATURES_V5, the current version).
"""

import sqlalchemy as sa
from alembic import op

from app.rules.features_sql import DROP_FUNCTIONS, FEATURES_V5

revision = "b5c0ffee0045"
down_revision = "b4c0ffee0044"
branch_labels = None
depends_on = None

COLUMNS = (("customer_aum_daily", "aum"), ("customer_activity_daily", "txn_amount"))


def _retype(before: sa.Numeric, after: sa.Numeric) -> None:
    for statement in [*DROP_FUNCTIONS, "DROP VIEW customer_features"]:
        op.execute(statement)
    for table, column in COLUMNS:
        op.alter_column(table, column, type_=after, existing_type=before)
    for statement in FEATURES_V5.statements("CREATE VIEW"):
        op.execute(statement)


def upgrade() -> None:
    _retype(sa.Numeric(18, 2), sa.Numeric(30, 2))


def downgrade() -> None:
    _retype(sa.Numeric(30, 2), sa.Numeric(18, 2))  # fails where a stored total no longer fits 18 digits
