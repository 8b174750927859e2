"""customer contact mark: the latest time each customer was contacted in a way the contact policy counts, kept by
triggers; the policy's outcomes counted by a function the recommendations call only for a customer so marked

`customer_contact_mark` (customer_id, last_contact_at) is kept by statement-level triggers (one call per statement,
with its transition table: the feedback intake writes many rows in one statement) on feedback_event (impressions
and dismissals), community_membership and activity_participation (invitations) and manager_contact, in the writing
transaction, whichever code writes. `contact_suppression(customer_id, now)` is the counting the recommendations'
statement held inline (app/recommendations/contact_suppression.py); the statement calls it only when the customer's
mark falls within the policy's horizon. The upgrade marks every customer from the rows there are.

Revision ID: b2c0ffee0038
Revises: a4c0ffee0031
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from app.recommendations.contact_suppression import CREATE_FUNCTION, MARKED

revision: str = "b2c0ffee0038"
down_revision: str | None = "a4c0ffee0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _marking(table: str, at: str, where: str, rows: str) -> str:
    """SQL: mark the customers of `rows` (`table`'s rows) at their latest `at`, in customer order (two statements
    marking the same customers lock their marks in the same order)."""
    return f"""
    INSERT INTO customer_contact_mark AS m (customer_id, last_contact_at)
    SELECT customer_id, max({at}) FROM {rows} WHERE {where} AND {at} IS NOT NULL
    GROUP BY customer_id ORDER BY customer_id
    ON CONFLICT (customer_id) DO UPDATE SET last_contact_at = excluded.last_contact_at
    WHERE excluded.last_contact_at > m.last_contact_at"""


def upgrade() -> None:
    op.create_table(
        "customer_contact_mark",
        sa.Column("customer_id", sa.BigInteger(), nullable=False),
        sa.Column("last_contact_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customer.id"], name="fk_customer_contact_mark_customer_id_customer", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("customer_id", name="pk_customer_contact_mark"),
    )
    for table, (at, where) in MARKED.items():
        op.execute(_marking(table, at, where, table))
        op.execute(f"""
CREATE FUNCTION {table}_contact_mark() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    {_marking(table, at, where, "changed")};
    RETURN NULL;
END
$$""")
        for event in ("INSERT", "UPDATE"):
            op.execute(
                f"CREATE TRIGGER {table}_contact_mark_{event.lower()} AFTER {event} ON {table} "
                f"REFERENCING NEW TABLE AS changed FOR EACH STATEMENT EXECUTE FUNCTION {table}_contact_mark()"
            )
    op.execute(CREATE_FUNCTION)


def downgrade() -> None:
    op.execute("DROP FUNCTION contact_suppression(bigint, timestamptz)")
    for table in reversed(MARKED):
        for event in ("update", "insert"):
            op.execute(f"DROP TRIGGER {table}_contact_mark_{event} ON {table}")
        op.execute(f"DROP FUNCTION {table}_contact_mark()")
    op.drop_table("customer_contact_mark")
