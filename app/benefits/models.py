"""Benefit tables: the catalogue (one row per code, its revisions kept), attachments to tiers of a policy, and
uses with a per-period counter that enforces the usage limit."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

KINDS = (
    "fee_waiver",
    "rate_discount",
    "points_multiplier",
    "service",
    "gift",
    "partner_offer",
    "exclusive_product",
)
UNITS = ("percent", "multiplier", "currency", "count", "none")
PERIODS = ("month", "quarter", "year")


class Benefit(Base):
    __tablename__ = "benefit"
    __table_args__ = (
        CheckConstraint(f"kind IN {KINDS}", name="kind"),
        CheckConstraint(f"unit IN {UNITS}", name="unit"),
        CheckConstraint(f"usage_period IS NULL OR usage_period IN {PERIODS}", name="usage_period"),
        CheckConstraint("(usage_limit IS NULL) = (usage_period IS NULL)", name="limit_with_period"),
        CheckConstraint("usage_limit IS NULL OR usage_limit >= 1", name="usage_limit"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    code: Mapped[str] = mapped_column(String(40), unique=True)
    kind: Mapped[str] = mapped_column(String(20))
    applies_to: Mapped[str | None] = mapped_column(String(40))
    value: Mapped[Decimal | None] = mapped_column(Numeric(18, 4))
    unit: Mapped[str] = mapped_column(String(12))
    usage_limit: Mapped[int | None] = mapped_column(Integer)
    usage_period: Mapped[str | None] = mapped_column(String(8))
    channels: Mapped[list[str]] = mapped_column(ARRAY(Text))
    valid_from: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    valid_to: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    texts: Mapped[dict[str, Any]] = mapped_column(JSONB)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'"))
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    revision: Mapped[int] = mapped_column(Integer, server_default=text("1"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class BenefitRevision(Base):
    """Every revision of a benefit as it read after the change, with who made it and when (the history)."""

    __tablename__ = "benefit_revision"
    __table_args__ = (UniqueConstraint("benefit_id", "revision"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    benefit_id: Mapped[int] = mapped_column(ForeignKey("benefit.id", ondelete="CASCADE"))
    revision: Mapped[int] = mapped_column(Integer)
    document: Mapped[dict[str, Any]] = mapped_column(JSONB)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class BenefitUse(Base):
    """One use of a benefit by a customer, attributed to the tier that gave it (erased with the customer)."""

    __tablename__ = "benefit_use"
    __table_args__ = (
        # keyed by (customer_id, id) (README, "Scaling"), which also serves a customer's uses newest first; the
        # API reads a use by customer and id
        PrimaryKeyConstraint("customer_id", "id"),
        Index("ix_benefit_use_benefit_at", "benefit_id", "used_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    benefit_id: Mapped[int] = mapped_column(ForeignKey("benefit.id", ondelete="CASCADE"))
    policy_key: Mapped[str] = mapped_column(String(40))
    tier: Mapped[str] = mapped_column(String(40))
    channel: Mapped[str | None] = mapped_column(String(10))
    period_start: Mapped[date | None] = mapped_column(Date)
    used_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class BenefitUsage(Base):
    """Uses of a limited benefit per customer and period: the counter an upsert raises only below the limit,
    so concurrent uses never exceed it (the row lock of ON CONFLICT DO UPDATE orders them)."""

    __tablename__ = "benefit_usage"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True)
    benefit_id: Mapped[int] = mapped_column(ForeignKey("benefit.id", ondelete="CASCADE"), primary_key=True)
    period_start: Mapped[date] = mapped_column(Date, primary_key=True)
    used: Mapped[int] = mapped_column(Integer)
