"""Customer tables: profile, current holdings, balance history, events and their daily rollups."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
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
    SmallInteger,
    String,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

Money = Numeric(18, 2)
MoneyTotal = Numeric(30, 2)  # a sum of amounts (a day's AUM, a day's transactions): core.fields.MoneyTotal's digits


class Customer(Base):
    __tablename__ = "customer"
    __table_args__ = (
        CheckConstraint("segment IN ('retail', 'small_business')", name="segment"),
        CheckConstraint("risk_level BETWEEN 1 AND 5", name="risk_level"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(64), index=True)  # unique by customer_external_id
    segment: Mapped[str] = mapped_column(String(20))
    display_name: Mapped[str | None] = mapped_column(String(200))
    birth_date: Mapped[date | None] = mapped_column(Date)
    onboarded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    risk_level: Mapped[int | None] = mapped_column(SmallInteger)
    risk_assessed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    marketing_consent: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    last_txn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    erased_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class CustomerExternalId(Base):
    """Every customer row's external id (an erased row's random one too) and its id: what holds external ids unique,
    so that customer's keys need only its id (distributed by it under Citus, where this table is distributed by
    external_id: README, "Scaling"). Written in the same statement or transaction as the customer's row by every
    writer of an external id (app.customers.service, the NDJSON import, erasure, the demo bank). No foreign key: it
    is not co-located with customer, and Citus has none across co-location groups."""

    __tablename__ = "customer_external_id"

    external_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)


class CustomerErasure(Base):
    """An external id that was erased, as a keyed hash (app.customers.service.erasure_token): what lets a repeated
    DELETE answer 204 without keeping the id. Not linked to the erased rows, whose external ids are random."""

    __tablename__ = "customer_erasure"

    token: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Holding(Base):
    """The customer's current products: replaced as a set by PUT .../holdings."""

    __tablename__ = "holding"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True)
    product_code: Mapped[str] = mapped_column(ForeignKey("product.code"), primary_key=True)
    opened_at: Mapped[date | None] = mapped_column(Date)
    balance: Mapped[Decimal] = mapped_column(Money)
    as_of: Mapped[date] = mapped_column(Date)


class HoldingBalance(Base):
    """Every balance reported for a holding, by date: the history averages are computed from."""

    __tablename__ = "holding_balance"
    __table_args__ = (Index("ix_holding_balance_as_of", "as_of"),)  # the last report's day, read by the ranker

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True)
    product_code: Mapped[str] = mapped_column(String(40), primary_key=True)
    as_of: Mapped[date] = mapped_column(Date, primary_key=True)
    balance: Mapped[Decimal] = mapped_column(Money)


class CustomerAumDaily(Base):
    """Assets under management on each day a holdings set was reported (a step function between days)."""

    __tablename__ = "customer_aum_daily"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    aum: Mapped[Decimal] = mapped_column(MoneyTotal)


class CustomerEvent(Base):
    """Raw activity: transactions, app logins and referrals, each once per client event_id (and its occurred_at).

    Partitioned by month of occurred_at (app/core/partitions.py): the key and the unique index carry it."""

    __tablename__ = "customer_event"
    __table_args__ = (
        PrimaryKeyConstraint("customer_id", "id", "occurred_at"),
        CheckConstraint("kind IN ('transaction', 'login', 'referral')", name="kind"),
        CheckConstraint("direction IS NULL OR direction IN ('credit', 'debit')", name="direction"),
        Index("uq_customer_event_customer_id_event_id", "customer_id", "event_id", "occurred_at", unique=True),
        {"postgresql_partition_by": "RANGE (occurred_at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    amount: Mapped[Decimal | None] = mapped_column(Money)
    direction: Mapped[str | None] = mapped_column(String(10))
    channel: Mapped[str | None] = mapped_column(String(20))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CustomerActivityDaily(Base):
    """Events rolled up per customer and day, maintained on intake: the source of the activity metrics."""

    __tablename__ = "customer_activity_daily"

    # No foreign key: its check was a trigger call per row in every event intake, which holds the customer's row
    # itself (FOR KEY SHARE, app.customers.locks) while it writes; erasure deletes the rollups.
    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    day: Mapped[date] = mapped_column(Date, primary_key=True)
    txn_count: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    txn_amount: Mapped[Decimal] = mapped_column(MoneyTotal, server_default=text("0"))
    logins: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    referrals: Mapped[int] = mapped_column(Integer, server_default=text("0"))


class HoldingImport(Base):
    """One bulk intake of balances and holdings (POST /v1/holdings/import, `tierwise import-balances`): keyed by the
    file's digest, so that the same file sent again resumes it or, finished, changes nothing."""

    __tablename__ = "holding_import"
    __table_args__ = (
        CheckConstraint("status IN ('merging', 'succeeded', 'failed')", name="status"),
        CheckConstraint("format IN ('ndjson', 'csv')", name="format"),
        Index("uq_holding_import_api_key_id_idempotency_key", "api_key_id", "idempotency_key", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    digest: Mapped[str | None] = mapped_column(String(64), unique=True)
    format: Mapped[str] = mapped_column(String(10))
    status: Mapped[str] = mapped_column(String(10), server_default=text("'merging'"))
    requested_by: Mapped[str] = mapped_column(String(100))
    api_key_id: Mapped[int | None] = mapped_column(BigInteger)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    lines: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    accepted: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    rejected: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    customers: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    customers_done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    chunks_done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    error: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class HoldingImportLine(Base):
    """An import's staged lines: accepted ones until their chunk is merged (then deleted with it), rejected ones
    (with `pointer` and `detail`) for the import's report."""

    __tablename__ = "holding_import_line"
    __table_args__ = (Index("ix_holding_import_line_import_id_customer_id", "import_id", "customer_id"),)

    import_id: Mapped[int] = mapped_column(ForeignKey("holding_import.id", ondelete="CASCADE"), primary_key=True)
    line: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(64))
    customer_id: Mapped[int | None] = mapped_column(BigInteger)
    product_code: Mapped[str | None] = mapped_column(String(40))
    opened_at: Mapped[date | None] = mapped_column(Date)
    balance: Mapped[Decimal | None] = mapped_column(Money)
    as_of: Mapped[date | None] = mapped_column(Date)
    pointer: Mapped[str | None] = mapped_column(String(100))
    detail: Mapped[str | None] = mapped_column(String(300))


class RetierMark(Base):
    """A customer whose tiers an intake has made stale (activity events, the NDJSON import), waiting for the
    re-tiering worker's next micro-batch (app.customers.retier). One row per customer and scope of what moved:
    `activity` (the policies reading activity metrics) or `any` (every active policy)."""

    __tablename__ = "retier_mark"
    __table_args__ = (
        CheckConstraint("scope IN ('activity', 'any')", name="scope"),
        Index("ix_retier_mark_marked_at", "marked_at"),
    )

    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)  # no foreign key: app.customers.retier
    scope: Mapped[str] = mapped_column(String(10), primary_key=True)
    marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class RetierMarkSet(Base):
    """The customers one NDJSON import statement wrote, marked for the re-tiering worker as one row (their ids, in
    order) instead of a retier_mark row each: the worker expands it into retier_mark rows in a transaction of its
    own (app.customers.retier.expand_sets), which deletes it, so that a crash loses no mark. Its ids are stored
    uncompressed (STORAGE EXTERNAL, migration d4c0ffee0060): pglz cost a 5,000-id set 13 ms, stored as is 0.4 ms."""

    __tablename__ = "retier_mark_set"
    __table_args__ = (CheckConstraint("scope IN ('activity', 'any')", name="scope"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_ids: Mapped[list[int]] = mapped_column(ARRAY(BigInteger))
    scope: Mapped[str] = mapped_column(String(10))
    marked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
