"""Manager tables: managers (the tiers they serve, their capacity), the current assignment of a customer to one
manager, the history of assignments, assignment runs, and the contact log (notes erased with the customer)."""

from datetime import datetime

from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    func,
    text,
)
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
        CheckConstraint(f"action IN {ACTIONS}", name="action"),
        Index("ix_manager_assignment_change_customer", "customer_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
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
        Index("ix_manager_contact_customer", "customer_id", "id"),
        Index("ix_manager_contact_manager", "manager_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    manager_id: Mapped[int | None] = mapped_column(ForeignKey("relationship_manager.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(10))
    outcome: Mapped[str] = mapped_column(String(20))
    note: Mapped[str | None] = mapped_column(Text)
    contacted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
