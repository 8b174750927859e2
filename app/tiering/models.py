"""Tier policy tables: a policy, its numbered versions (one active, enforced by a partial unique index), its audit."""

from datetime import datetime
from typing import Any

from sqlalchemy import (BigInteger, CheckConstraint, DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint,
                        func, text)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

VERSION_STATUSES = ("draft", "active", "retired")
CHANGE_ACTIONS = ("create", "add_version", "edit", "activate", "retire", "rollback")


class TierPolicy(Base):
    __tablename__ = "tier_policy"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TierPolicyVersion(Base):
    __tablename__ = "tier_policy_version"
    __table_args__ = (
        UniqueConstraint("policy_id", "version"),
        CheckConstraint(f"status IN {VERSION_STATUSES}", name="status"),
        CheckConstraint("downgrade_grace_days BETWEEN 0 AND 730", name="downgrade_grace_days"),
        # The database, not the service, guarantees one active version per policy.
        Index("uq_tier_policy_version_one_active", "policy_id", unique=True,
              postgresql_where=text("status = 'active'")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("tier_policy.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(10), server_default=text("'draft'"))
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    downgrade_grace_days: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    description: Mapped[str] = mapped_column(Text, server_default=text("''"))
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    retired_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class TierPolicyChange(Base):
    """The audit trail of a policy: who did what to which version, with before/after where it matters."""

    __tablename__ = "tier_policy_change"
    __table_args__ = (CheckConstraint(f"action IN {CHANGE_ACTIONS}", name="action"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    policy_id: Mapped[int] = mapped_column(ForeignKey("tier_policy.id", ondelete="CASCADE"), index=True)
    version: Mapped[int | None] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'"))
