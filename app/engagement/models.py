"""Engagement tables: communities and their memberships (every move kept), member activity events, activities
and their participations (invitation, RSVP, waiting list, attendance)."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base

COMMUNITY_STATES = ("planned", "open", "closed")
MEMBERSHIP_STATES = ("invited", "joined", "left", "declined", "removed")
MEMBER_ACTIVITY_KINDS = ("post", "reply", "meeting_attended", "share")
ACTIVITY_KINDS = ("salon", "lecture", "appreciation_event", "campaign")
ACTIVITY_CHANNELS = ("branch", "online")
PARTICIPATION_STATES = ("invited", "accepted", "waitlisted", "declined", "attended", "no_show")


class Community(Base):
    """A community of customers around a shared interest: who may be invited (a condition, and optionally tiers of
    a policy), how many may join, and whether it is planned, open or closed."""

    __tablename__ = "community"
    __table_args__ = (CheckConstraint(f"state IN {COMMUNITY_STATES}", name="state"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    goal: Mapped[str | None] = mapped_column(Text)
    owner_team: Mapped[str] = mapped_column(String(100))
    audience: Mapped[dict[str, Any]] = mapped_column(JSONB)
    audience_policy_key: Mapped[str | None] = mapped_column(String(40))
    audience_tiers: Mapped[list[str]] = mapped_column(ARRAY(String(40)), server_default=text("'{}'"))
    capacity: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(10), server_default=text("'planned'"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CommunityMembership(Base):
    """One customer's place in a community: invited -> joined -> left, or declined, or removed. Personal data
    (who takes part in what): erased with the customer."""

    __tablename__ = "community_membership"
    __table_args__ = (
        # keyed by (customer_id, id): a customer's rows together, ready for distribution by customer_id (README,
        # "Scaling"); id still comes from its own sequence, and the API finds a membership by community and customer
        PrimaryKeyConstraint("customer_id", "id"),
        CheckConstraint(f"state IN {MEMBERSHIP_STATES}", name="state"),
        Index("uq_community_membership_community_customer", "community_id", "customer_id", unique=True),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(20))
    invited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    joined_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CommunityMembershipMove(Base):
    """Every move of a membership with its time and channel (the history metrics count joins and leaves from)."""

    __tablename__ = "community_membership_move"
    __table_args__ = (
        PrimaryKeyConstraint("customer_id", "id"),  # the membership's customer: on its shard (README, "Scaling")
        ForeignKeyConstraint(
            ["customer_id", "membership_id"],
            ["community_membership.customer_id", "community_membership.id"],
            ondelete="CASCADE",
        ),
        Index("ix_community_membership_move_membership", "membership_id", "id"),
        Index("ix_community_membership_move_community_at", "community_id", "at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    customer_id: Mapped[int] = mapped_column(BigInteger)
    membership_id: Mapped[int] = mapped_column(BigInteger)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    from_state: Mapped[str | None] = mapped_column(String(10))
    to_state: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(20))
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CommunityActivityEvent(Base):
    """A member's post, reply, attended meeting or share, once per (customer, community, event_id): a retried event
    changes nothing. Kept with its customer (README, "Scaling": distributed by customer_id), whose tiering reads it."""

    __tablename__ = "community_activity_event"
    __table_args__ = (
        PrimaryKeyConstraint("customer_id", "id"),
        CheckConstraint(f"kind IN {MEMBER_ACTIVITY_KINDS}", name="kind"),
        Index("uq_community_activity_event_event", "customer_id", "community_id", "event_id", unique=True),
        Index("ix_community_activity_event_customer", "customer_id", "occurred_at"),
        Index("ix_community_activity_event_community_at", "community_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    community_id: Mapped[int] = mapped_column(ForeignKey("community.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(100))
    kind: Mapped[str] = mapped_column(String(20))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Activity(Base):
    """A salon, lecture, appreciation event or campaign: its audience, channel, capacity, schedule and the codes of
    the benefits it grants (benefit catalogue codes, kept as text: no foreign key to that catalogue)."""

    __tablename__ = "activity"
    __table_args__ = (
        CheckConstraint(f"kind IN {ACTIVITY_KINDS}", name="kind"),
        CheckConstraint(f"channel IN {ACTIVITY_CHANNELS}", name="channel"),
        CheckConstraint("capacity > 0", name="capacity"),
        CheckConstraint("ends_at > starts_at", name="schedule"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(20))
    owner_team: Mapped[str] = mapped_column(String(100))
    audience: Mapped[dict[str, Any]] = mapped_column(JSONB)
    audience_policy_key: Mapped[str | None] = mapped_column(String(40))
    audience_tiers: Mapped[list[str]] = mapped_column(ARRAY(String(40)), server_default=text("'{}'"))
    channel: Mapped[str] = mapped_column(String(10))
    capacity: Mapped[int] = mapped_column(Integer)
    starts_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ends_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    benefit_codes: Mapped[list[str]] = mapped_column(ARRAY(String(60)), server_default=text("'{}'"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ActivityParticipation(Base):
    """One customer's place in an activity: invited -> accepted (or waitlisted, promoted when a place frees) ->
    attended / no_show, or declined. Personal data: erased with the customer."""

    __tablename__ = "activity_participation"
    __table_args__ = (
        # keyed by (customer_id, id) (README, "Scaling"); the API finds a participation by activity and customer
        PrimaryKeyConstraint("customer_id", "id"),
        CheckConstraint(f"state IN {PARTICIPATION_STATES}", name="state"),
        Index("uq_activity_participation_activity_customer", "activity_id", "customer_id", unique=True),
        Index(
            "ix_activity_participation_waitlist",
            "activity_id",
            "waitlisted_at",
            postgresql_where="state = 'waitlisted'",
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    activity_id: Mapped[int] = mapped_column(ForeignKey("activity.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(String(10))
    channel: Mapped[str] = mapped_column(String(20))
    invited_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    responded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    waitlisted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attended_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


REFERRAL_STATUSES = ("referred", "onboarded", "active")


class Referral(Base):
    """A customer's referral of a friend: the referee is another customer (referee_id) or, until they become one,
    a pending referral code; it moves referred -> onboarded -> active, and only an active (converted) referral
    counts in the referrer's advocacy. Once per (referrer, event_id). The referrer's erasure deletes it; the
    referee's erasure clears the referee and the code.

    Kept with its referrer (README, "Scaling"): keyed (referrer_id, id), the plain index on id serving the routes
    that name a referral alone; referee_id has no foreign key (the referee is another customer, on another shard
    under Citus): the statements that set it name a customer they have just found (app/engagement/referrals.py)."""

    __tablename__ = "referral"
    __table_args__ = (
        PrimaryKeyConstraint("referrer_id", "id"),
        Index("ix_referral_id", "id"),
        CheckConstraint(f"status IN {REFERRAL_STATUSES}", name="status"),
        Index("uq_referral_referrer_event", "referrer_id", "event_id", unique=True),
        Index("ix_referral_referrer_activated", "referrer_id", "activated_at"),
        Index("ix_referral_referee", "referee_id"),
        Index("ix_referral_code", "referral_code"),
    )

    id: Mapped[int] = mapped_column(BigInteger, autoincrement=True)
    referrer_id: Mapped[int] = mapped_column(ForeignKey("customer.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(String(100))
    referee_id: Mapped[int | None] = mapped_column(BigInteger)
    referral_code: Mapped[str | None] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(10), server_default=text("'referred'"))
    referred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    onboarded_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    activated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
