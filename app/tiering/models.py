"""Tiering tables: a policy, its numbered versions (one active, enforced by a partial unique index), its audit;
assignments (with the effective tier), the change feed and batch runs."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql import ColumnElement, FromClause

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
        Index(
            "uq_tier_policy_version_one_active", "policy_id", unique=True, postgresql_where=text("status = 'active'")
        ),
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


class TierAssignment(Base):
    """A customer's current tier under one policy, with the grace state, any override and the evaluated facts.

    Written only by the assignment statement (from live customers and active versions), a million rows a run:
    it carries no foreign keys, whose per-row checks would cost more than the evaluation itself. Customers are
    never deleted (erasure keeps an anonymous row and removes its assignments)."""

    __tablename__ = "tier_assignment"
    __table_args__ = (
        Index("ix_tier_assignment_policy_tier", "policy_id", "tier_code"),
        Index("ix_tier_assignment_at_risk", "policy_id", postgresql_where=text("lower_since IS NOT NULL")),
        Index(
            "ix_tier_assignment_override",
            "policy_id",
            "customer_id",
            postgresql_where=text("override_code IS NOT NULL"),
        ),
    )

    customer_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    policy_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    version_id: Mapped[int] = mapped_column(BigInteger)
    tier_code: Mapped[str] = mapped_column(String(40))
    tier_rank: Mapped[int] = mapped_column(Integer)
    since: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # What the rules say today; differs from tier_code while a downgrade waits out its grace period.
    qualified_code: Mapped[str] = mapped_column(String(40))
    qualified_rank: Mapped[int] = mapped_column(Integer)
    lower_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    evaluated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    # The customer's value and the result of every comparison of the version, in compile_explanation order.
    facts: Mapped[list[Any]] = mapped_column(JSONB)
    override_code: Mapped[str | None] = mapped_column(String(40))
    override_rank: Mapped[int | None] = mapped_column(Integer)
    override_reason: Mapped[str | None] = mapped_column(Text)
    override_actor: Mapped[str | None] = mapped_column(String(200))
    override_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The row's part of its lean JSON document (all but the head, the rank and whether the override shows),
    # written by the trigger tier_assignment_lean on every insert and update
    # (migrations/versions/2026-12-06_tier_assignment_lean_text.py; read by assignment/lean_json.py only).
    lean_tail: Mapped[str] = mapped_column(Text, deferred=True)
    lean_override: Mapped[str | None] = mapped_column(Text, deferred=True)


# The tier a customer has under a policy: an unexpired override wins over the tier the rules (and grace) gave.
# Defined once, as the SQL functions tier_override_applies, effective_tier and effective_rank of a tier_assignment
# row (migrations/versions/2026-12-06_effective_tier.py), which Postgres inlines; raw SQL calls them as
# `effective_tier(a)`, SQLAlchemy through these.


def _row(assignment: FromClause | type[TierAssignment]) -> ColumnElement[Any]:
    table = assignment.__table__ if isinstance(assignment, type) else assignment
    return table.table_valued()


def tier_override_applies(assignment: FromClause | type[TierAssignment] = TierAssignment) -> ColumnElement[bool]:
    """Whether the assignment's override applies now (set and unexpired)."""
    return func.tier_override_applies(_row(assignment), type_=Boolean())


def effective_tier(assignment: FromClause | type[TierAssignment] = TierAssignment) -> ColumnElement[str]:
    """The tier code the customer has (`assignment`: the model, or an alias of its table)."""
    return func.effective_tier(_row(assignment), type_=Text())


def effective_rank(assignment: FromClause | type[TierAssignment] = TierAssignment) -> ColumnElement[int]:
    """The rank of the tier the customer has."""
    return func.effective_rank(_row(assignment), type_=Integer())


class TierTransition(Base):
    """The change feed: every tier change of every customer, in an order readers can follow with a cursor.
    Append-only and high-volume, so, like tier_assignment, without foreign keys; partitioned by month of `at`
    (app/core/partitions.py), so the key carries it; the key, leading with (customer_id, id), also serves a
    customer's transitions in id order."""

    __tablename__ = "tier_transition"
    __table_args__ = (
        PrimaryKeyConstraint("customer_id", "id", "at"),
        CheckConstraint("direction IN ('initial', 'upgrade', 'downgrade', 'lateral')", name="direction"),
        Index("ix_tier_transition_feed", "tx_id", "id"),
        {"postgresql_partition_by": "RANGE (at)"},
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    # The writing transaction's id: the feed only shows rows of transactions older than every running one,
    # so a row can never appear behind a cursor a reader has already passed.
    tx_id: Mapped[int] = mapped_column(BigInteger, server_default=text("(pg_current_xact_id()::text)::bigint"))
    customer_id: Mapped[int] = mapped_column(BigInteger)
    policy_id: Mapped[int] = mapped_column(BigInteger)
    version_id: Mapped[int] = mapped_column(BigInteger)
    from_code: Mapped[str | None] = mapped_column(String(40))
    to_code: Mapped[str] = mapped_column(String(40))
    direction: Mapped[str] = mapped_column(String(10))
    reason: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TierRun(Base):
    """A batch evaluation of one policy (or all active ones) over the whole population, in chunks."""

    __tablename__ = "tier_run"
    __table_args__ = (
        CheckConstraint("status IN ('running', 'succeeded', 'failed')", name="status"),
        # One run per target at a time (policy_id NULL = every active policy).
        Index(
            "uq_tier_run_one_running",
            text("coalesce(policy_id, 0)"),
            unique=True,
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    policy_id: Mapped[int | None] = mapped_column(ForeignKey("tier_policy.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(10), server_default=text("'running'"))
    requested_by: Mapped[str] = mapped_column(String(200))
    total: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    processed: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    upgrades: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    downgrades: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    heartbeat_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    error: Mapped[str | None] = mapped_column(Text)
