"""product quotas (caps on conversions per period, with their ledger) and the recommendations' fallback message

Revision ID: f3c0ffee0024
Revises: e2c0ffee0021
Create Date: 2026-12-06 07:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "f3c0ffee0024"
down_revision: str | None = "e2c0ffee0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "product_quota",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("product_code", sa.String(length=40), nullable=False),
        sa.Column("period", sa.String(length=10), nullable=False),
        sa.Column("cap_count", sa.BigInteger(), nullable=True),
        sa.Column("cap_amount", sa.Numeric(18, 2), nullable=True),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sold_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("sold_amount", sa.Numeric(20, 2), server_default=sa.text("0"), nullable=False),
        sa.Column("over_cap_count", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("sold_out_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sold_out_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("period IN ('month', 'quarter', 'year', 'lifetime')", name=op.f("ck_product_quota_period")),
        sa.CheckConstraint("cap_count IS NOT NULL OR cap_amount IS NOT NULL", name=op.f("ck_product_quota_a_cap")),
        sa.CheckConstraint("cap_count > 0 AND cap_amount > 0", name=op.f("ck_product_quota_caps_positive")),
        sa.ForeignKeyConstraint(["product_code"], ["product.code"], name=op.f("fk_product_quota_product_code_product")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_product_quota")),
        sa.UniqueConstraint("product_code", name=op.f("uq_product_quota_product_code")),
    )
    op.create_table(
        "product_quota_conversion",
        sa.Column("product_code", sa.String(length=40), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("period_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=10), nullable=False),
        sa.Column("amount", sa.Numeric(18, 2), nullable=True),
        sa.Column("counted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("source IN ('convert', 'holding')", name=op.f("ck_product_quota_conversion_source")),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_product_quota_conversion_customer_id_customer"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["product_code"],
            ["product_quota.product_code"],
            name=op.f("fk_product_quota_conversion_product_code_product_quota"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "product_code", "period_start", "customer_id", name=op.f("pk_product_quota_conversion")
        ),
    )
    op.create_index("ix_product_quota_conversion_customer_id", "product_quota_conversion", ["customer_id"])
    op.create_table(
        "recommendation_fallback",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("code", sa.String(length=40), nullable=False),
        sa.Column("texts", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_recommendation_fallback_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recommendation_fallback")),
    )
    op.execute(
        """INSERT INTO recommendation_fallback (id, enabled, code, texts) VALUES (1, false, 'TALK_TO_ADVISER',
        '{"en": "Nothing new to offer you right now: talk to your adviser about what suits you.",
          "zh-CN": "目前暂无适合您的新产品推荐，欢迎联系您的客户经理咨询。"}')"""
    )


def downgrade() -> None:
    op.drop_table("recommendation_fallback")
    op.drop_index("ix_product_quota_conversion_customer_id", table_name="product_quota_conversion")
    op.drop_table("product_quota_conversion")
    op.drop_table("product_quota")
