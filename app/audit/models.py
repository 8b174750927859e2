"""The audit_event table: one row per admin write, written in the same transaction as the write."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, Index, PrimaryKeyConstraint, String, func
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base


class AuditEvent(Base):
    """Partitioned by month of `at` (app/core/partitions.py), so the key carries it."""

    __tablename__ = "audit_event"
    __table_args__ = (
        PrimaryKeyConstraint("id", "at"),
        Index("ix_audit_event_at", "at"),
        Index("ix_audit_event_entity", "entity_type", "entity_key"),
        Index("ix_audit_event_action", "action"),
        {"postgresql_partition_by": "RANGE (at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    actor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(40))
    entity_type: Mapped[str] = mapped_column(String(40))
    entity_key: Mapped[str] = mapped_column(String(200))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
