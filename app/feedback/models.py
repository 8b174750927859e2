"""Feedback tables: responses to recommendations (each event once, by the client's event_id)."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Index, String, func
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

FEEDBACK_KINDS = ("impression", "click", "accept", "dismiss", "convert")


class FeedbackEvent(Base):
    """What a customer did with a recommended product. Unique per (customer, event_id): a retry changes nothing."""

    __tablename__ = "feedback_event"
    __table_args__ = (
        CheckConstraint(f"kind IN {FEEDBACK_KINDS}", name="kind"),
        Index("uq_feedback_event_customer_id_event_id", "customer_id", "event_id", unique=True),
        Index("ix_feedback_event_contact", "customer_id", "product_code", "occurred_at"),
        Index("ix_feedback_event_recommendation", "recommendation_id"),
        Index("ix_feedback_event_occurred", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(100))
    recommendation_id: Mapped[Any] = mapped_column(UUID(as_uuid=True),
                                                   ForeignKey("recommendation_item.recommendation_id",
                                                              ondelete="CASCADE"))
    product_code: Mapped[str] = mapped_column(String(40))
    tier_code: Mapped[str | None] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(20))
    strategy: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(10))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
