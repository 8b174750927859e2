"""Feedback tables: responses to recommendations (each event once, by the client's event_id), survey answers,
complaints with their history, and the per-customer satisfaction summary rules read through customer_features."""

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

FEEDBACK_KINDS = ("impression", "click", "accept", "dismiss", "convert")
SURVEY_KINDS = ("nps", "csat")
COMPLAINT_STATUSES = ("open", "in_progress", "resolved", "closed")
COMPLAINT_CATEGORIES = ("fees", "service", "app", "product", "fraud", "other")


class FeedbackEvent(Base):
    """What a customer did with a recommended product. Unique per (customer, event_id, occurred_at): a retry changes
    nothing. Partitioned by month of occurred_at (app/core/partitions.py): the key and the unique index carry it."""

    __tablename__ = "feedback_event"
    __table_args__ = (
        PrimaryKeyConstraint("customer_id", "id", "occurred_at"),
        CheckConstraint(f"kind IN {FEEDBACK_KINDS}", name="kind"),
        Index("uq_feedback_event_customer_id_event_id", "customer_id", "event_id", "occurred_at", unique=True),
        Index("ix_feedback_event_contact", "customer_id", "product_code", "occurred_at"),
        Index("ix_feedback_event_recommendation", "recommendation_id"),
        Index("ix_feedback_event_occurred", "occurred_at"),
        {"postgresql_partition_by": "RANGE (occurred_at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(100))
    # the served item (its list's id with its rank in the low bits: app/recommendations/models.py
    # RecommendationList): checked by the intake statement, which stores only events of items it found (no foreign
    # key: an item is no row of its own)
    recommendation_id: Mapped[Any] = mapped_column(UUID(as_uuid=True))
    product_code: Mapped[str] = mapped_column(String(40))
    tier_code: Mapped[str | None] = mapped_column(String(40))
    channel: Mapped[str] = mapped_column(String(20))
    strategy: Mapped[str] = mapped_column(String(20))
    kind: Mapped[str] = mapped_column(String(10))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SurveyResponse(Base):
    """One NPS (0..10) or CSAT (1..5) answer, once per (customer, event_id). The comment is the customer's own
    words: stored and returned to authorised callers, never logged."""

    __tablename__ = "survey_response"
    __table_args__ = (
        # keyed by customer (README, "Scaling": distributed by customer_id); `id` is unique by its sequence, and the
        # plain index on it serves GET /v1/feedback/surveys/{survey_id} (under Citus, a lookup on every shard)
        PrimaryKeyConstraint("customer_id", "id"),
        Index("ix_survey_response_id", "id"),
        CheckConstraint(f"kind IN {SURVEY_KINDS}", name="kind"),
        CheckConstraint(
            "(kind = 'nps' AND score BETWEEN 0 AND 10) OR (kind = 'csat' AND score BETWEEN 1 AND 5)", name="score"
        ),
        Index("uq_survey_response_customer_id_event_id", "customer_id", "event_id", unique=True),
        # the satisfaction report: answers of a kind in a time range
        Index("ix_survey_response_kind_occurred", "kind", "occurred_at", postgresql_include=["customer_id", "score"]),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(4))
    score: Mapped[int] = mapped_column(SmallInteger)
    comment: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(String(20))
    touchpoint: Mapped[str] = mapped_column(String(40))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Complaint(Base):
    """A customer's complaint and where it stands: open -> in_progress -> resolved -> closed (and reopen).
    The description is the customer's own words: stored and returned to authorised callers, never logged."""

    __tablename__ = "complaint"
    __table_args__ = (
        # keyed by customer, as survey_response: the plain index on id serves the routes that name a complaint by
        # id alone (GET /v1/feedback/complaints/{complaint_id} and its transitions)
        PrimaryKeyConstraint("customer_id", "id"),
        Index("ix_complaint_id", "id"),
        CheckConstraint(f"status IN {COMPLAINT_STATUSES}", name="status"),
        CheckConstraint(f"category IN {COMPLAINT_CATEGORIES}", name="category"),
        Index("uq_complaint_customer_id_event_id", "customer_id", "event_id", unique=True),
        Index("ix_complaint_status", "status", "id"),
        Index("ix_complaint_opened", "opened_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(100))
    category: Mapped[str] = mapped_column(String(20))
    channel: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(12), server_default=text("'open'"))
    opened_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    resolved_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ComplaintTransition(Base):
    """The history of a complaint: every move with who made it, why and when. Carries the complaint's customer,
    with whom it is kept (and refers to the complaint by (customer_id, complaint_id))."""

    __tablename__ = "complaint_transition"
    __table_args__ = (
        PrimaryKeyConstraint("customer_id", "id"),
        ForeignKeyConstraint(
            ["customer_id", "complaint_id"], ["complaint.customer_id", "complaint.id"], ondelete="CASCADE"
        ),
        Index("ix_complaint_transition_complaint", "customer_id", "complaint_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    complaint_id: Mapped[int] = mapped_column(BigInteger)
    from_status: Mapped[str | None] = mapped_column(String(12))
    to_status: Mapped[str] = mapped_column(String(12))
    actor: Mapped[str] = mapped_column(String(200))
    note: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CustomerSatisfaction(Base):
    """Per-customer satisfaction, maintained in the same statement as each survey and complaint write (additive
    upserts, no read-modify-write): the source of the satisfaction columns of customer_features."""

    __tablename__ = "customer_satisfaction"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True)
    nps_latest: Mapped[int | None] = mapped_column(SmallInteger)
    nps_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    csat_sum: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    csat_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    open_complaints: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    resolved_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    resolve_days_sum: Mapped[Decimal] = mapped_column(Numeric(14, 4), server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
