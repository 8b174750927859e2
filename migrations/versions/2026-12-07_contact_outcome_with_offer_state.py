"""contact outcome stored with the offer state: what the contact policy suppresses for a customer, counted once and
read with the state until a write to what it counts (statement triggers on feedback_event, community_membership,
activity_participation and manager_contact move the state's contact_generation on and clear it), a change of the
policy (contact_policy_version, bumped by contact_rule's triggers) or time (contact_until) ends it

Revision ID: d3c0ffee0059
Revises: d1c0ffee0057
Create Date: 2026-12-07 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "d3c0ffee0059"
down_revision: str | None = "d1c0ffee0057"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = ("feedback_event", "community_membership", "activity_participation", "manager_contact")

# The changed customers' states, locked in id order (as mark_stale locks them: no deadlock between writers), their
# contact generation moved on and their stored outcome cleared.
_CLEAR = """
    UPDATE customer_offer_state s SET contact_generation = s.contact_generation + 1, contact_until = NULL,
           contact_from = NULL, contact_policy = NULL, contact_keys = NULL, contact_rules = NULL
    FROM (SELECT o.customer_id FROM customer_offer_state o WHERE o.customer_id IN ({changed})
          ORDER BY o.customer_id FOR UPDATE) l
    WHERE s.customer_id = l.customer_id;"""


def upgrade() -> None:
    for column in (
        sa.Column("contact_generation", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("contact_policy", sa.BigInteger(), nullable=True),
        sa.Column("contact_from", sa.DateTime(timezone=True), nullable=True),
        sa.Column("contact_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("contact_keys", postgresql.ARRAY(sa.Text()), nullable=True),
        sa.Column("contact_rules", postgresql.ARRAY(sa.Text()), nullable=True),
    ):
        op.add_column("customer_offer_state", column)
    op.execute("CREATE SEQUENCE contact_policy_version_seq")
    op.create_table(
        "contact_policy_version",
        sa.Column("id", sa.SmallInteger(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_contact_policy_version_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_policy_version")),
    )
    op.execute("INSERT INTO contact_policy_version (id, version) VALUES (1, nextval('contact_policy_version_seq'))")
    op.execute(
        "CREATE FUNCTION bump_contact_policy_version() RETURNS trigger LANGUAGE plpgsql AS $$ "
        "BEGIN UPDATE contact_policy_version SET version = nextval('contact_policy_version_seq'); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER contact_rule_bumps_contact_policy_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE "
        "ON contact_rule FOR EACH STATEMENT EXECUTE FUNCTION bump_contact_policy_version()"
    )
    op.execute(f"""
CREATE FUNCTION contact_outcomes_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN{_CLEAR.format(changed="SELECT customer_id FROM new_rows")}
  ELSIF TG_OP = 'DELETE' THEN{_CLEAR.format(changed="SELECT customer_id FROM old_rows")}
  ELSE{_CLEAR.format(changed="SELECT customer_id FROM old_rows UNION SELECT customer_id FROM new_rows")}
  END IF;
  RETURN NULL;
END $$""")
    for table in SOURCES:
        # transition tables allow one event a trigger
        op.execute(
            f"CREATE TRIGGER {table}_inserted_clears_contact AFTER INSERT ON {table} REFERENCING NEW TABLE AS new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION contact_outcomes_changed()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_updated_clears_contact AFTER UPDATE ON {table} "
            "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION contact_outcomes_changed()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_deleted_clears_contact AFTER DELETE ON {table} REFERENCING OLD TABLE AS old_rows "
            "FOR EACH STATEMENT EXECUTE FUNCTION contact_outcomes_changed()"
        )
        op.execute(
            f"CREATE TRIGGER {table}_truncated_bumps_contact_policy_version AFTER TRUNCATE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION bump_contact_policy_version()"
        )


def downgrade() -> None:
    for table in SOURCES:
        for trigger in ("inserted_clears_contact", "updated_clears_contact", "deleted_clears_contact"):
            op.execute(f"DROP TRIGGER {table}_{trigger} ON {table}")
        op.execute(f"DROP TRIGGER {table}_truncated_bumps_contact_policy_version ON {table}")
    op.execute("DROP FUNCTION contact_outcomes_changed()")
    op.execute("DROP TRIGGER contact_rule_bumps_contact_policy_version ON contact_rule")
    op.execute("DROP FUNCTION bump_contact_policy_version()")
    op.drop_table("contact_policy_version")
    op.execute("DROP SEQUENCE contact_policy_version_seq")
    for column in (
        "contact_rules",
        "contact_keys",
        "contact_until",
        "contact_from",
        "contact_policy",
        "contact_generation",
    ):
        op.drop_column("customer_offer_state", column)
