"""catalog version: one row set by triggers on product and custom_attribute_definition

A recommendation checks that its instance's compiled catalog is current by reading this row. It used to compute
the version (count, max id and max updated_at of the products, and the count of custom attributes) on every
request: two aggregates and two scans in every recommendation statement. The triggers set the version in the
writing transaction, from a sequence, so that it becomes visible with the write and a number is never reused.

Revision ID: a9c0ffee0009
Revises: a8c0ffee0008
Create Date: 2026-11-23 07:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a9c0ffee0009"
down_revision: str | None = "a8c0ffee0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("product", "custom_attribute_definition")


def upgrade() -> None:
    op.execute("CREATE SEQUENCE catalog_version_seq")
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_catalog_version_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_version")),
    )
    op.execute("INSERT INTO catalog_version (id, version) VALUES (1, nextval('catalog_version_seq'))")
    op.execute(
        "CREATE FUNCTION bump_catalog_version() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN UPDATE catalog_version SET version = nextval('catalog_version_seq'); RETURN NULL; END $$"
    )
    for table in TABLES:
        op.execute(
            f"CREATE TRIGGER {table}_bumps_catalog_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
            f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION bump_catalog_version()"
        )


def downgrade() -> None:
    for table in TABLES:
        op.execute(f"DROP TRIGGER {table}_bumps_catalog_version ON {table}")
    op.execute("DROP FUNCTION bump_catalog_version()")
    op.drop_table("catalog_version")
    op.execute("DROP SEQUENCE catalog_version_seq")
