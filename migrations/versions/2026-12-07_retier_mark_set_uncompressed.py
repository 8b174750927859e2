"""retier mark sets stored uncompressed: a set's ids (5,000 for a chunk of an import, 40 kB) were compressed by pglz
on every insert, 13 ms of the import's statement a chunk against 0.4 ms stored out of line as they are; the set lives
until the worker expands it

Revision ID: d4c0ffee0060
Revises: d3c0ffee0059
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "d4c0ffee0060"
down_revision: str | None = "d3c0ffee0059"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE retier_mark_set ALTER COLUMN customer_ids SET STORAGE EXTERNAL")


def downgrade() -> None:
    op.execute("ALTER TABLE retier_mark_set ALTER COLUMN customer_ids SET STORAGE EXTENDED")
