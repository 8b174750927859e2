"""holding imports: bulk intake of balances and holdings, keyed by file digest, with staged lines

Revision ID: d7c0ffee0020
Revises: d3c0ffee0017
Create Date: 2026-12-06 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d7c0ffee0020"
down_revision: str | None = "d3c0ffee0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "holding_import",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=True),
        sa.Column("format", sa.String(length=10), nullable=False),
        sa.Column("status", sa.String(length=10), server_default=sa.text("'merging'"), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=False),
        sa.Column("api_key_id", sa.BigInteger(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("lines", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("accepted", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("rejected", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("customers", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("customers_done", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("chunks_done", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("error", sa.String(length=300), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint("status IN ('merging', 'succeeded', 'failed')", name=op.f("ck_holding_import_status")),
        sa.CheckConstraint("format IN ('ndjson', 'csv')", name=op.f("ck_holding_import_format")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_holding_import")),
        sa.UniqueConstraint("digest", name=op.f("uq_holding_import_digest")),
    )
    op.create_index(
        "uq_holding_import_api_key_id_idempotency_key",
        "holding_import",
        ["api_key_id", "idempotency_key"],
        unique=True,
    )
    op.create_table(
        "holding_import_line",
        sa.Column("import_id", sa.BigInteger(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("customer_id", sa.BigInteger(), nullable=True),
        sa.Column("product_code", sa.String(length=40), nullable=True),
        sa.Column("opened_at", sa.Date(), nullable=True),
        sa.Column("balance", sa.Numeric(precision=18, scale=2), nullable=True),
        sa.Column("as_of", sa.Date(), nullable=True),
        sa.Column("pointer", sa.String(length=100), nullable=True),
        sa.Column("detail", sa.String(length=300), nullable=True),
        sa.ForeignKeyConstraint(
            ["import_id"],
            ["holding_import.id"],
            name=op.f("fk_holding_import_line_import_id_holding_import"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("import_id", "line", name=op.f("pk_holding_import_line")),
    )
    op.create_index("ix_holding_import_line_import_id_customer_id", "holding_import_line", ["import_id", "customer_id"])


def downgrade() -> None:
    op.drop_table("holding_import_line")
    op.drop_table("holding_import")
