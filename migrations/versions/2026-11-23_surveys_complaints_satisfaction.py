"""surveys complaints satisfaction: survey answers, complaints with their history, the per-customer satisfaction
summary, its columns in customer_features (and customer_features_for), and the indexes the reports read.

Revision ID: a5c0ffee0005
Revises: a4c0ffee0004
Create Date: 2026-11-23 01:35:28.606824
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.rules.features_sql import FEATURES_V1, FEATURES_V2, replace_features

revision: str = "a5c0ffee0005"
down_revision: str | None = "a4c0ffee0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The satisfaction columns are appended to customer_features (app/rules/features_sql.py: FEATURES_V2, this revision's
# frozen version; the downgrade restores FEATURES_V1).


def upgrade() -> None:
    op.create_table(
        "complaint",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("category", sa.String(length=20), nullable=False),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=12), server_default=sa.text("'open'"), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "category IN ('fees', 'service', 'app', 'product', 'fraud', 'other')", name=op.f("ck_complaint_category")
        ),
        sa.CheckConstraint("status IN ('open', 'in_progress', 'resolved', 'closed')", name=op.f("ck_complaint_status")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_complaint_customer_id_customer"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint")),
    )
    op.create_index("ix_complaint_customer", "complaint", ["customer_id", "id"], unique=False)
    op.create_index("ix_complaint_opened", "complaint", ["opened_at"], unique=False)
    op.create_index("ix_complaint_status", "complaint", ["status", "id"], unique=False)
    op.create_index("uq_complaint_customer_id_event_id", "complaint", ["customer_id", "event_id"], unique=True)
    op.create_table(
        "customer_satisfaction",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("nps_latest", sa.SmallInteger(), nullable=True),
        sa.Column("nps_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("csat_sum", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("csat_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("open_complaints", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("resolved_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("resolve_days_sum", sa.Numeric(precision=14, scale=4), server_default=sa.text("0"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customer.id"],
            name=op.f("fk_customer_satisfaction_customer_id_customer"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_satisfaction")),
    )
    op.create_table(
        "survey_response",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("event_id", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=4), nullable=False),
        sa.Column("score", sa.SmallInteger(), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("channel", sa.String(length=20), nullable=False),
        sa.Column("touchpoint", sa.String(length=40), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint(
            "(kind = 'nps' AND score BETWEEN 0 AND 10) OR (kind = 'csat' AND score BETWEEN 1 AND 5)",
            name=op.f("ck_survey_response_score"),
        ),
        sa.CheckConstraint("kind IN ('nps', 'csat')", name=op.f("ck_survey_response_kind")),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name=op.f("fk_survey_response_customer_id_customer"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey_response")),
    )
    op.create_index(
        "ix_survey_response_kind_occurred",
        "survey_response",
        ["kind", "occurred_at"],
        unique=False,
        postgresql_include=["customer_id", "score"],
    )
    op.create_index(
        "uq_survey_response_customer_id_event_id", "survey_response", ["customer_id", "event_id"], unique=True
    )
    op.create_table(
        "complaint_transition",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("complaint_id", sa.BigInteger(), nullable=False),
        sa.Column("from_status", sa.String(length=12), nullable=True),
        sa.Column("to_status", sa.String(length=12), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.ForeignKeyConstraint(
            ["complaint_id"],
            ["complaint.id"],
            name=op.f("fk_complaint_transition_complaint_id_complaint"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_complaint_transition")),
    )
    op.create_index("ix_complaint_transition_complaint", "complaint_transition", ["complaint_id", "id"], unique=False)
    # the reports: funnel over a time range from the index alone; tier moves of a policy in a time range
    op.create_index(
        "ix_feedback_event_funnel",
        "feedback_event",
        ["occurred_at"],
        unique=False,
        postgresql_include=["recommendation_id", "kind", "product_code", "tier_code", "strategy"],
    )
    op.create_index("ix_tier_transition_policy_at", "tier_transition", ["policy_id", "at"], unique=False)

    replace_features(op.execute, FEATURES_V2)


def downgrade() -> None:
    replace_features(op.execute, FEATURES_V1, fewer_columns=True)

    op.drop_index("ix_tier_transition_policy_at", table_name="tier_transition")
    op.drop_index("ix_feedback_event_funnel", table_name="feedback_event")
    op.drop_index("ix_complaint_transition_complaint", table_name="complaint_transition")
    op.drop_table("complaint_transition")
    op.drop_index("uq_survey_response_customer_id_event_id", table_name="survey_response")
    op.drop_index("ix_survey_response_kind_occurred", table_name="survey_response")
    op.drop_table("survey_response")
    op.drop_table("customer_satisfaction")
    op.drop_index("uq_complaint_customer_id_event_id", table_name="complaint")
    op.drop_index("ix_complaint_status", table_name="complaint")
    op.drop_index("ix_complaint_opened", table_name="complaint")
    op.drop_index("ix_complaint_customer", table_name="complaint")
    op.drop_table("complaint")
