"""ranker model: versions of the learned ranker (gradient-boosted propensities), one of them serving

The partial unique index on status lets the database, not the code, keep one serving version.

Revision ID: b2c0ffee0021
Revises: c0c0ffee0012
Create Date: 2026-12-06 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b2c0ffee0021"
down_revision: str | None = "c0c0ffee0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ranker_model",
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("trained_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("trained_by", sa.String(length=20), nullable=False),
        sa.Column("window_from", sa.Date(), nullable=False),
        sa.Column("window_until", sa.Date(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("features", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("products", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("metrics", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("model", sa.LargeBinary(), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("served_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('candidate', 'serving', 'retired')", name=op.f("ck_ranker_model_status")),
        sa.PrimaryKeyConstraint("version", name=op.f("pk_ranker_model")),
    )
    op.create_index(
        "uq_ranker_model_serving",
        "ranker_model",
        ["status"],
        unique=True,
        postgresql_where=sa.text("status = 'serving'"),
    )


def downgrade() -> None:
    op.drop_index("uq_ranker_model_serving", table_name="ranker_model", postgresql_where=sa.text("status = 'serving'"))
    op.drop_table("ranker_model")
