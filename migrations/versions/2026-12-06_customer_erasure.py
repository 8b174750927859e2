"""customer erasure: erased external ids kept as keyed hashes in a table of their own, and erased rows given random
external ids, so that an id can be erased, created again and erased again any number of times

Before, an erased row's external_id was the keyed hash itself: erasing an id the second time gave the second row
the same value and broke uq_customer_external_id. The hashes of rows erased before move to customer_erasure (a
repeated erasure of those ids still answers 204), and those rows get random external ids that link none of them.

Revision ID: d1c0ffee0014
Revises: b2c0ffee0021
Create Date: 2026-12-06 00:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1c0ffee0014"
down_revision: str | None = "b2c0ffee0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "customer_erasure",
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("erased_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("token", name=op.f("pk_customer_erasure")),
    )
    op.execute(
        "INSERT INTO customer_erasure (token, erased_at) "
        "SELECT substr(external_id, 8), max(erased_at) FROM customer "
        "WHERE erased_at IS NOT NULL AND external_id LIKE 'erased:%' GROUP BY 1"
    )
    op.execute(
        "UPDATE customer SET external_id = 'erased:' || substr(md5(random()::text || id::text), 1, 20) "
        "|| substr(md5(id::text || random()::text), 1, 20) WHERE erased_at IS NOT NULL"
    )


def downgrade() -> None:
    # The erased rows' former external ids are not restored: the keyed hashes cannot be matched to rows any more.
    op.drop_table("customer_erasure")
