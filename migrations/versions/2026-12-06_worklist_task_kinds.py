"""worklist task kinds: care dates, complaints past their SLA, near-miss upgrades and high-value customers gone
quiet; the care holiday calendar, the worklist rules (one row), a task's contact

Revision ID: f1c0ffee0022
Revises: e2c0ffee0021
Create Date: 2026-12-06 07:20:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "f1c0ffee0022"
down_revision: str | None = "f2c0ffee0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OLD_KINDS = "kind IN ('downgrade_at_risk', 'cadence_overdue')"
NEW_KINDS = (
    "kind IN ('downgrade_at_risk', 'cadence_overdue', 'care_date', 'complaint_overdue', 'near_miss_upgrade', "
    "'gone_quiet')"
)


def upgrade() -> None:
    op.create_table(
        "care_holiday",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("holiday_key", sa.String(length=40), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column(
            "names", postgresql.JSONB(astext_type=sa.Text()), server_default=sa.text("'{}'::jsonb"), nullable=False
        ),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_care_holiday")),
        sa.UniqueConstraint("holiday_key", name=op.f("uq_care_holiday_holiday_key")),
    )
    op.create_index("ix_care_holiday_day", "care_holiday", ["day"], unique=False)
    op.create_table(
        "worklist_rules",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("care", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("complaint_sla", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("near_miss", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("gone_quiet", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_worklist_rules_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_worklist_rules")),
    )
    op.alter_column("manager_task", "period", type_=sa.String(length=60), existing_type=sa.String(length=40))
    op.add_column("manager_task", sa.Column("contact_id", sa.BigInteger(), nullable=True))
    op.create_foreign_key(
        op.f("fk_manager_task_contact_id_manager_contact"),
        "manager_task",
        "manager_contact",
        ["contact_id"],
        ["id"],
        ondelete="SET NULL",
    )
    op.drop_constraint(op.f("ck_manager_task_kind"), "manager_task", type_="check")
    op.create_check_constraint(op.f("ck_manager_task_kind"), "manager_task", NEW_KINDS)


def downgrade() -> None:
    op.execute("DELETE FROM manager_task WHERE NOT (" + OLD_KINDS + ")")
    op.drop_constraint(op.f("ck_manager_task_kind"), "manager_task", type_="check")
    op.create_check_constraint(op.f("ck_manager_task_kind"), "manager_task", OLD_KINDS)
    op.drop_constraint(op.f("fk_manager_task_contact_id_manager_contact"), "manager_task", type_="foreignkey")
    op.drop_column("manager_task", "contact_id")
    op.alter_column("manager_task", "period", type_=sa.String(length=40), existing_type=sa.String(length=60))
    op.drop_table("worklist_rules")
    op.drop_index("ix_care_holiday_day", table_name="care_holiday")
    op.drop_table("care_holiday")
