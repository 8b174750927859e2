"""The product table."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
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
