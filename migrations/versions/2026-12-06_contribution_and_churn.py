"""contribution and churn: the products' contribution margins, the churn model's versions, and the features view
with contribution_monthly and churn_risk (FEATURES_V5)

Revision ID: f2c0ffee0023
Revises: e2c0ffee0021
Create Date: 2026-12-06 07:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.rules.features_sql import FEATURES_V4, FEATURES_V5, replace_features

revision: str = "f2c0ffee0023"
down_revision: str | None = "f3c0ffee0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "contribution_margin",
        sa.Column("product_code", sa.String(length=40), nullable=False),
        sa.Column("margin_rate", sa.Numeric(precision=8, scale=6), nullable=False),
        sa.Column("monthly_fee", sa.Numeric(precision=18, scale=2), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("margin_rate BETWEEN -1 AND 1", name=op.f("ck_contribution_margin_margin_rate")),
        sa.CheckConstraint("monthly_fee >= 0", name=op.f("ck_contribution_margin_monthly_fee")),
        sa.ForeignKeyConstraint(
            ["product_code"],
            ["product.code"],
            name=op.f("fk_contribution_margin_product_code_product"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("product_code", name=op.f("pk_contribution_margin")),
    )
    op.create_table(
        "churn_model",
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("features", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("intercept", sa.Float(precision=53), nullable=False),
        sa.Column("coefficients", postgresql.ARRAY(sa.Float(precision=53)), nullable=False),
        sa.Column("horizon_months", sa.Integer(), nullable=False),
        sa.Column("decline_share", sa.Numeric(precision=4, scale=3), nullable=False),
        sa.Column("window_from", sa.Date(), nullable=False),
        sa.Column("window_until", sa.Date(), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("positives", sa.Integer(), nullable=False),
        sa.Column(
            "metrics", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("fitted_by", sa.String(length=200), nullable=False),
        sa.Column("fitted_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_churn_model")),
    )
    replace_features(op.execute, FEATURES_V5)


def downgrade() -> None:
    replace_features(op.execute, FEATURES_V4, fewer_columns=True)
    op.drop_table("churn_model")
    op.drop_table("contribution_margin")
