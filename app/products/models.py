"""The product table."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ARRAY, BigInteger, Boolean, CheckConstraint, DateTime, Numeric, SmallInteger, String, Text, func, text
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
