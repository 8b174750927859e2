"""engagement: communities (memberships with their moves, member activity), activities (participations with a
waiting list) and referrals, and FEATURES_V4 (communities_joined, community_active_30d, activities_attended_12m,
referrals_converted_12m, advocacy_score in customer_features and its functions)

Revision ID: d6c0ffee0018
Revises: d4c0ffee0016
Create Date: 2026-12-06 04:14:16.255452
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from app.rules.features_sql import FEATURES_V3, FEATURES_V4, replace_features

revision: str = "d6c0ffee0018"
down_revision: str | None = "d4c0ffee0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "activity",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("owner_team", sa.String(length=100), nullable=False),
        sa.Column("audience", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("audience_policy_key", sa.String(length=40), nullable=True),
        sa.Column(
            "audience_tiers", postgresql.ARRAY(sa.String(length=40)), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("channel", sa.String(length=10), nullable=False),
        sa.Column("capacity", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "benefit_codes", postgresql.ARRAY(sa.String(length=60)), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("channel IN ('branch', 'online')", name=op.f("ck_activity_channel")),
        sa.CheckConstraint(
            "kind IN ('salon', 'lecture', 'appreciation_event', 'campaign')", name=op.f("ck_activity_kind")
        ),
        sa.CheckConstraint("capacity > 0", name=op.f("ck_activity_capacity")),
        sa.CheckConstraint("ends_at > starts_at", name=op.f("ck_activity_schedule")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity")),
        sa.UniqueConstraint("key", name=op.f("uq_activity_key")),
    )
    op.create_table(
        "community",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("goal", sa.Text(), nullable=True),
        sa.Column("owner_team", sa.String(length=100), nullable=False),
        sa.Column("audience", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("audience_policy_key", sa.String(length=40), nullable=True),
        sa.Column(
            "audience_tiers", postgresql.ARRAY(sa.String(length=40)), server_default=sa.text("'{}'"), nullable=False
        ),
        sa.Column("capacity", sa.Integer(), nullable=True),
        sa.Column("state", sa.String(length=10), server_default=sa.text("'planned'"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("state IN ('planned', 'open', 'closed')", name=op.f("ck_community_state")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community")),
        sa.UniqueConstraint("key", name=op.f("uq_community_key")),
    )
    op.create_table(
        "activity_participation",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("activity_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("responded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("waitlisted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "state IN ('invited', 'accepted', 'waitlisted', 'declined', 'attended', 'no_show')",
            name=op.f("ck_activity_participation_state"),
        ),
        sa.ForeignKeyConstraint(
            ["activity_id"],
            ["activity.id"],
            name=op.f("fk_activity_participation_activity_id_activity"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_activity_participation_customer_id_customer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_activity_participation")),
    )
    op.create_index("ix_activity_participation_customer", "activity_participation", ["customer_id"], unique=False)
    op.create_index(
        "ix_activity_participation_waitlist",
        "activity_participation",
        ["activity_id", "waitlisted_at"],
        unique=False,
        postgresql_where="state = 'waitlisted'",
    )
    op.create_index(
        "uq_activity_participation_activity_customer",
        "activity_participation",
        ["activity_id", "customer_id"],
        unique=True,
    )
    op.create_table(
        "community_activity_event",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "kind IN ('post', 'reply', 'meeting_attended', 'share')", name=op.f("ck_community_activity_event_kind")
        ),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["community.id"],
            name=op.f("fk_community_activity_event_community_id_community"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_community_activity_event_customer_id_customer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_activity_event")),
    )
    op.create_index(
        "ix_community_activity_event_community_at",
        "community_activity_event",
        ["community_id", "occurred_at"],
        unique=False,
    )
    op.create_index(
        "ix_community_activity_event_customer", "community_activity_event", ["customer_id", "occurred_at"], unique=False
    )
    op.create_index(
        "uq_community_activity_event_community_event",
        "community_activity_event",
        ["community_id", "event_id"],
        unique=True,
    )
    op.create_table(
        "community_membership",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("invited_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "state IN ('invited', 'joined', 'left', 'declined', 'removed')", name=op.f("ck_community_membership_state")
        ),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["community.id"],
            name=op.f("fk_community_membership_community_id_community"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_community_membership_customer_id_customer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_membership")),
    )
    op.create_index("ix_community_membership_customer", "community_membership", ["customer_id"], unique=False)
    op.create_index(
        "uq_community_membership_community_customer",
        "community_membership",
        ["community_id", "customer_id"],
        unique=True,
    )
    op.create_table(
        "referral",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("referrer_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("referee_id", sa.BigInteger(), nullable=True),
        sa.Column("referral_code", sa.String(length=40), nullable=True),
        sa.Column("status", sa.String(length=10), server_default=sa.text("'referred'"), nullable=False),
        sa.Column("referred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("onboarded_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("activated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("status IN ('referred', 'onboarded', 'active')", name=op.f("ck_referral_status")),
        sa.ForeignKeyConstraint(
            ["referee_id"], ["customer.id"], name=op.f("fk_referral_referee_id_customer"), ondelete="SET NULL"
        ),
        sa.ForeignKeyConstraint(
            ["referrer_id"], ["customer.id"], name=op.f("fk_referral_referrer_id_customer"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_referral")),
    )
    op.create_index("ix_referral_code", "referral", ["referral_code"], unique=False)
    op.create_index("ix_referral_referee", "referral", ["referee_id"], unique=False)
    op.create_index("ix_referral_referrer_activated", "referral", ["referrer_id", "activated_at"], unique=False)
    op.create_index("uq_referral_referrer_event", "referral", ["referrer_id", "event_id"], unique=True)
    op.create_table(
        "community_membership_move",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("membership_id", sa.BigInteger(), nullable=False),
        sa.Column("community_id", sa.BigInteger(), nullable=False),
        sa.Column("from_state", sa.String(length=10), nullable=True),
        sa.Column("to_state", sa.String(length=10), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["community_id"],
            ["community.id"],
            name=op.f("fk_community_membership_move_community_id_community"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["membership_id"],
            ["community_membership.id"],
            name=op.f("fk_community_membership_move_membership_id_community_membership"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_community_membership_move")),
    )
    op.create_index(
        "ix_community_membership_move_community_at", "community_membership_move", ["community_id", "at"], unique=False
    )
    op.create_index(
        "ix_community_membership_move_membership", "community_membership_move", ["membership_id", "id"], unique=False
    )
    replace_features(op.execute, FEATURES_V4)


def downgrade() -> None:
    replace_features(op.execute, FEATURES_V3, fewer_columns=True)
    op.drop_index("ix_community_membership_move_membership", table_name="community_membership_move")
    op.drop_index("ix_community_membership_move_community_at", table_name="community_membership_move")
    op.drop_table("community_membership_move")
    op.drop_index("uq_referral_referrer_event", table_name="referral")
    op.drop_index("ix_referral_referrer_activated", table_name="referral")
    op.drop_index("ix_referral_referee", table_name="referral")
    op.drop_index("ix_referral_code", table_name="referral")
    op.drop_table("referral")
    op.drop_index("uq_community_membership_community_customer", table_name="community_membership")
    op.drop_index("ix_community_membership_customer", table_name="community_membership")
    op.drop_table("community_membership")
    op.drop_index("uq_community_activity_event_community_event", table_name="community_activity_event")
    op.drop_index("ix_community_activity_event_customer", table_name="community_activity_event")
    op.drop_index("ix_community_activity_event_community_at", table_name="community_activity_event")
    op.drop_table("community_activity_event")
    op.drop_index("uq_activity_participation_activity_customer", table_name="activity_participation")
    op.drop_index(
        "ix_activity_participation_waitlist",
        table_name="activity_participation",
        postgresql_where="state = 'waitlisted'",
    )
    op.drop_index("ix_activity_participation_customer", table_name="activity_participation")
    op.drop_table("activity_participation")
    op.drop_table("community")
    op.drop_table("activity")
