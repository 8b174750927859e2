"""Webhook tables: subscriptions, the transactional outbox of events, one delivery per (subscription, event), and
the delivery log of every attempt."""

from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import (
    ARRAY,
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.dialects.postgresql import UUID as PgUUID
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

SUBSCRIPTION_STATUSES = ("active", "paused")
DELIVERY_STATES = ("pending", "delivered", "dead")


class WebhookSubscription(Base):
    """Where to send which events. The signing secret is stored sealed (app/core/crypto.py); after a rotation the
    previous one also signs until previous_secret_expires_at."""

    __tablename__ = "webhook_subscription"
    __table_args__ = (CheckConstraint(f"status IN {SUBSCRIPTION_STATUSES}", name="status"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(Text))
    status: Mapped[str] = mapped_column(String(10), server_default=text("'active'"))
    secret_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    previous_secret_sealed: Mapped[bytes | None] = mapped_column(LargeBinary)
    previous_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WebhookEvent(Base):
    """The outbox: one row per event, written in the transaction of the change it reports (`outbox.emit`).
    `id` orders events; `event_id` is what receivers de-duplicate on. fanned_out_at: deliveries were made."""

    __tablename__ = "webhook_event"
    __table_args__ = (
        Index("ix_webhook_event_not_fanned_out", "id", postgresql_where=text("fanned_out_at IS NULL")),
        Index("ix_webhook_event_created_at", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    event_id: Mapped[UUID] = mapped_column(PgUUID(as_uuid=True), unique=True, server_default=text("gen_random_uuid()"))
    event_type: Mapped[str] = mapped_column(String(60))
    customer_id: Mapped[int | None] = mapped_column(BigInteger)  # customer.id: events of one customer are ordered
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    fanned_out_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the W3C traceparent of the request (or the work it started) that made the change: deliveries continue it
    traceparent: Mapped[str | None] = mapped_column(String(55))


class WebhookDelivery(Base):
    """One event for one subscription: pending (due at next_attempt_at; leased_until while a worker sends it),
    then delivered or dead (after the last attempt; a manual redeliver makes it pending again).

    Partitioned by month of created_at (app/core/partitions.py), so the key and the unique index carry it: an
    event's deliveries are all made by the one fan-out that marks it (under its row lock), so they share one
    created_at and (subscription_id, event_id) stays unique in fact."""

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        PrimaryKeyConstraint("id", "created_at"),
        CheckConstraint(f"state IN {DELIVERY_STATES}", name="state"),
        Index("uq_webhook_delivery_subscription_id_event_id", "subscription_id", "event_id", "created_at", unique=True),
        Index("ix_webhook_delivery_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
        Index("ix_webhook_delivery_pending", "id", postgresql_where=text("state = 'pending'")),  # the queue lag
        # the order rule: the earliest pending delivery of a (subscription, customer) goes first
        Index(
            "ix_webhook_delivery_pending_order",
            "subscription_id",
            "customer_id",
            "id",
            postgresql_where=text("state = 'pending'"),
        ),
        Index("ix_webhook_delivery_subscription", "subscription_id", "id"),
        Index("ix_webhook_delivery_event", "event_id"),
        Index("ix_webhook_delivery_finished", "finished_at", postgresql_where=text("state = 'delivered'")),
        {"postgresql_partition_by": "RANGE (created_at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscription.id", ondelete="CASCADE"))
    event_id: Mapped[int] = mapped_column(ForeignKey("webhook_event.id", ondelete="CASCADE"))
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    state: Mapped[str] = mapped_column(String(10), server_default=text("'pending'"))
    attempts: Mapped[int] = mapped_column(SmallInteger, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    leased_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(SmallInteger)
    last_error: Mapped[str | None] = mapped_column(String(60))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class WebhookAttempt(Base):
    """The delivery log: each POST with its time, duration and HTTP status or error class (never a body, a
    header or the secret). Partitioned by month of `at` (app/core/partitions.py) with the deliveries' retention.
    delivery_id is webhook_delivery.id without a foreign key (a key to a partitioned table must name its whole
    primary key): an attempt is recorded only while its delivery exists, and purged with it."""

    __tablename__ = "webhook_attempt"
    __table_args__ = (
        PrimaryKeyConstraint("id", "at"),
        Index("ix_webhook_attempt_delivery", "delivery_id", "id"),
        {"postgresql_partition_by": "RANGE (at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    delivery_id: Mapped[int] = mapped_column(BigInteger)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[int] = mapped_column(Integer)
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    error: Mapped[str | None] = mapped_column(String(60))
