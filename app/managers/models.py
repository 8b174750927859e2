"""Manager tables: managers (the tiers they serve, their capacity), the current assignment of a customer to one
manager, the history of assignments, assignment runs, and the contact log (notes erased with the customer)."""

from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
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

from app.core.db import Base

SOURCES = ("run", "manual")
ACTIONS = ("assigned", "reassigned", "released")
CONTACT_KINDS = ("call", "visit", "message")
CONTACT_CHANNELS = ("phone", "branch", "video", "mobile", "email", "sms", "wechat")
CONTACT_OUTCOMES = ("reached", "no_answer", "callback_requested", "declined", "follow_up")


class RelationshipManager(Base):
    """A relationship manager: the bank's id for them, their team, the tiers of one policy they serve, and how many
    customers they can look after."""

    __tablename__ = "relationship_manager"
    __table_args__ = (CheckConstraint("capacity BETWEEN 0 AND 100000", name="capacity"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    manager_id: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    team: Mapped[str] = mapped_column(String(100))
    policy_key: Mapped[str] = mapped_column(String(40))
    tiers: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    capacity: Mapped[int] = mapped_column(Integer)
    is_active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ManagerAssignment(Base):
    """A customer's current manager (one at most): kept while the customer holds a tier the manager serves."""

    __tablename__ = "manager_assignment"
    __table_args__ = (
        CheckConstraint(f"source IN {SOURCES}", name="source"),
        Index("ix_manager_assignment_manager", "manager_id"),
    )

    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"), primary_key=True)
    manager_id: Mapped[int] = mapped_column(ForeignKey("relationship_manager.id", ondelete="CASCADE"))
    policy_key: Mapped[str] = mapped_column(String(40))
    tier: Mapped[str] = mapped_column(String(40))
    source: Mapped[str] = mapped_column(String(10))
    assigned_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ManagerAssignmentChange(Base):
    """The history: every assignment, reassignment (with its reason) and release of a customer."""

    __tablename__ = "manager_assignment_change"
    __table_args__ = (
        # keyed by (customer_id, id) (README, "Scaling"), which also serves a customer's history newest first
        PrimaryKeyConstraint("customer_id", "id"),
        CheckConstraint(f"action IN {ACTIONS}", name="action"),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(12))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("relationship_manager.id", ondelete="SET NULL"))
    previous_manager_id: Mapped[int | None] = mapped_column(ForeignKey("relationship_manager.id", ondelete="SET NULL"))
    run_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(200))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ManagerAssignmentRun(Base):
    """One assignment run over the whole population, with what it did."""

    __tablename__ = "manager_assignment_run"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    actor: Mapped[str] = mapped_column(String(200))
    kept: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    released: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    assigned: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    unassigned: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class ManagerContact(Base):
    """A contact with a customer: a call, visit or message, its channel and outcome, and a note (personal data:
    never logged, erased with the customer)."""

    __tablename__ = "manager_contact"
    __table_args__ = (
        CheckConstraint(f"kind IN {CONTACT_KINDS}", name="kind"),
        CheckConstraint(f"channel IN {CONTACT_CHANNELS}", name="channel"),
        CheckConstraint(f"outcome IN {CONTACT_OUTCOMES}", name="outcome"),
        # keyed by (customer_id, id) (README, "Scaling"), which also serves a customer's contacts newest first;
        # the API reads a contact by customer and id
        PrimaryKeyConstraint("customer_id", "id"),
        Index("ix_manager_contact_manager", "manager_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("relationship_manager.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(10))
    outcome: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    contacted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


TASK_KINDS = (
    "downgrade_at_risk",
    "cadence_overdue",
    "care_date",
    "complaint_overdue",
    "near_miss_upgrade",
    "gone_quiet",
)
TASK_STATES = ("open", "done", "snoozed", "dismissed")


class ContactCadence(Base):
    """How often a customer of a tier is to be contacted (data the bank changes): every `days` days."""

    __tablename__ = "contact_cadence"
    __table_args__ = (CheckConstraint("days BETWEEN 1 AND 3650", name="days"),)

    policy_key: Mapped[str] = mapped_column(String(40), primary_key=True)
    tier: Mapped[str] = mapped_column(String(40), primary_key=True)
    days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ManagerTask(Base):
    """A worklist task, generated from data once per customer, kind and period (the unique key), and worked by
    whoever manages the customer now (it moves with them)."""

    __tablename__ = "manager_task"
    __table_args__ = (
        # keyed by customer (README, "Scaling"); the plain index on id serves PATCH /v1/manager-tasks/{task_id}
        PrimaryKeyConstraint("customer_id", "id"),
        Index("ix_manager_task_id", "id"),
        CheckConstraint(f"kind IN {TASK_KINDS}", name="kind"),
        CheckConstraint(f"state IN {TASK_STATES}", name="state"),
        UniqueConstraint("customer_id", "kind", "period", name="uq_manager_task_once"),
        Index("ix_manager_task_customer_open", "customer_id", postgresql_where=text("state IN ('open', 'snoozed')")),
        # the contact recorded when the task was done, always the task's customer's; deleting it clears contact_id
        ForeignKeyConstraint(
            ["customer_id", "contact_id"],
            ["manager_contact.customer_id", "manager_contact.id"],
            ondelete="SET NULL (contact_id)",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    period: Mapped[str] = mapped_column(String(60))
    reason: Mapped[str] = mapped_column(Text)
    due_on: Mapped[date] = mapped_column(Date)
    state: Mapped[str] = mapped_column(String(10), server_default=text("'open'"))
    snoozed_until: Mapped[date | None] = mapped_column(Date)
    outcome: Mapped[str | None] = mapped_column(Text)
    closed_by: Mapped[str | None] = mapped_column(String(200))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    contact_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CareHoliday(Base):
    """A holiday of the bank's care calendar (Spring Festival, Mid-Autumn ...) on its date that year: every
    managed customer gets a care task the configured days before it."""

    __tablename__ = "care_holiday"
    __table_args__ = (Index("ix_care_holiday_day", "day"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    holiday_key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    names: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    day: Mapped[date] = mapped_column(Date)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class WorklistRules(Base):
    """The bank's worklist rules (one row, data the bank changes): each section the settings of one task kind,
    null when the bank does not want it (care dates, complaints past their SLA, near-miss upgrades, high-value
    customers gone quiet). Downgrades at risk are always on; contact cadences are per tier in contact_cadence."""

    __tablename__ = "worklist_rules"
    __table_args__ = (CheckConstraint("id = 1", name="one_row"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    care: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    complaint_sla: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    near_miss: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    gone_quiet: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
