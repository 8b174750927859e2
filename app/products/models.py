"""The product table, the catalog's version, and product quotas (caps on conversions per period, with the
ledger of conversions counted against them: app/products/quotas.py)."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Numeric,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

CATEGORIES = ("deposit", "wealth", "fund", "insurance", "loan", "card")


class Product(Base):
    __tablename__ = "product"
    __table_args__ = (
        CheckConstraint(f"category IN {CATEGORIES}", name="category"),
        CheckConstraint("risk_level BETWEEN 1 AND 5", name="risk_level"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(20))
    risk_level: Mapped[int] = mapped_column(SmallInteger)
    min_amount: Mapped[Decimal] = mapped_column(Numeric(18, 2), server_default=text("0"))
    channels: Mapped[list[str]] = mapped_column(ARRAY(Text))
    active_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    active_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    value_weight: Mapped[Decimal] = mapped_column(Numeric(8, 4), server_default=text("1"))
    lever: Mapped[Decimal] = mapped_column(Numeric(8, 4), server_default=text("1"))
    target_tiers: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    eligibility: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    is_service: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    description: Mapped[str] = mapped_column(Text, server_default=text("''"))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CatalogVersion(Base):
    """One row: the version of what a recommender instance compiles (products and custom attribute definitions).
    Statement triggers on those two tables set it from a sequence in the writing transaction (migration
    a9c0ffee0009), so it changes exactly when a committed write does, and a number is never reused, even by a
    rolled-back write. Every recommendation reads this row to check its compiled catalog."""

    __tablename__ = "catalog_version"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)


QUOTA_PERIODS = ("month", "quarter", "year", "lifetime")


class ProductQuota(Base):
    """A product's caps (a count and/or an amount of conversions per period) and what the current period has sold.
    The counters belong to `period_start`'s period: the first conversion of a later period starts them again.
    `sold_out_until`: the end of the period a cap was reached in ('infinity' for a lifetime cap); recommendations
    leave the product out while it is in the future."""

    __tablename__ = "product_quota"
    __table_args__ = (
        CheckConstraint(f"period IN {QUOTA_PERIODS}", name="period"),
        CheckConstraint("cap_count IS NOT NULL OR cap_amount IS NOT NULL", name="a_cap"),
        CheckConstraint("cap_count > 0 AND cap_amount > 0", name="caps_positive"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    product_code: Mapped[str] = mapped_column(ForeignKey("product.code"), unique=True)
    period: Mapped[str] = mapped_column(String(10))
    cap_count: Mapped[int | None] = mapped_column(BigInteger)
    cap_amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sold_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    sold_amount: Mapped[Decimal] = mapped_column(Numeric(20, 2), server_default=text("0"))
    over_cap_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    sold_out_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sold_out_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProductQuotaConversion(Base):
    """One customer's conversion to a quota'd product in one period, whichever signal reported it first (a convert
    event or a new holding): the key that makes a conversion count once. `counted`: false when it came past a cap
    (recorded, not counted)."""

    __tablename__ = "product_quota_conversion"
    __table_args__ = (CheckConstraint("source IN ('convert', 'holding')", name="source"),)

    product_code: Mapped[str] = mapped_column(
        ForeignKey("product_quota.product_code", ondelete="CASCADE"), primary_key=True
    )
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    source: Mapped[str] = mapped_column(String(10))
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    counted: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
