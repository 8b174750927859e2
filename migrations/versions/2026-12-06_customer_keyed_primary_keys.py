"""customer_id in the primary keys of memberships, participations, benefit uses, assignment history and contacts

Revision ID: a5c0ffee0032
Revises: f9c0ffee0030
Create Date: 2026-12-06

Ready for distribution by customer_id (README, "Scaling"; tests/test_citus_ready.py): activity_participation,
benefit_use, community_membership, manager_assignment_change and manager_contact were keyed by their own id alone;
their primary key becomes (customer_id, id). `id` keeps its own sequence, so it stays unique in fact, and every
route that reads one of these rows names the customer (a membership or participation by programme and customer, a
benefit use or contact by customer and id, the assignment history by customer).

- The plain indexes the new keys cover are dropped: (customer_id, id) on benefit_use, manager_assignment_change and
  manager_contact, (customer_id) on activity_participation and community_membership.
- community_membership_move referred to its membership by id alone: it gains the membership's customer_id (filled
  from the membership), its key becomes (customer_id, id) and its foreign key (customer_id, membership_id).
- manager_task's contact (always the task's customer's: recorded by closing the task) is referred to by
  (customer_id, contact_id), ON DELETE SET NULL (contact_id) so that deleting a contact clears only contact_id.

Not partitioned tables; nothing of the monthly partitions (f9c0ffee0030) changes. Each new key is built under an
exclusive lock on its table: fine for the demo size; a bank's database would build the unique indexes
CONCURRENTLY first and attach them with ADD CONSTRAINT ... USING INDEX. The downgrade restores the keys on id alone,
the indexes and the foreign keys on id, and drops community_membership_move.customer_id.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "a5c0ffee0032"
down_revision: str | None = "f9c0ffee0030"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYED = (
    "activity_participation",
    "benefit_use",
    "community_membership",
    "community_membership_move",
    "manager_assignment_change",
    "manager_contact",
)
# indexes the keys (customer_id, id) cover: name -> (table, columns)
COVERED = {
    "ix_activity_participation_customer": ("activity_participation", "customer_id"),
    "ix_benefit_use_customer": ("benefit_use", "customer_id, id"),
    "ix_community_membership_customer": ("community_membership", "customer_id"),
    "ix_manager_assignment_change_customer": ("manager_assignment_change", "customer_id, id"),
    "ix_manager_contact_customer": ("manager_contact", "customer_id, id"),
}
MOVE_KEY_BEFORE = "fk_community_membership_move_membership_id_community_membership"
MOVE_KEY = "fk_community_membership_move_customer_id_community_membership"
TASK_KEY_BEFORE = "fk_manager_task_contact_id_manager_contact"
TASK_KEY = "fk_manager_task_customer_id_manager_contact"


def _primary_key(table: str, columns: str) -> None:
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, ADD CONSTRAINT pk_{table} PRIMARY KEY ({columns})")


def upgrade() -> None:
    op.execute(f"ALTER TABLE manager_task DROP CONSTRAINT {TASK_KEY_BEFORE}")
    op.execute(f"ALTER TABLE community_membership_move DROP CONSTRAINT {MOVE_KEY_BEFORE}")
    op.execute("ALTER TABLE community_membership_move ADD COLUMN customer_id BIGINT")
    op.execute(
        "UPDATE community_membership_move mv SET customer_id = m.customer_id "
        "FROM community_membership m WHERE m.id = mv.membership_id"
    )
    op.execute("ALTER TABLE community_membership_move ALTER COLUMN customer_id SET NOT NULL")
    for table in KEYED:
        _primary_key(table, "customer_id, id")
    for name in COVERED:
        op.execute(f"DROP INDEX {name}")
    op.execute(
        f"ALTER TABLE community_membership_move ADD CONSTRAINT {MOVE_KEY} FOREIGN KEY (customer_id, membership_id) "
        "REFERENCES community_membership (customer_id, id) ON DELETE CASCADE"
    )
    op.execute(
        f"ALTER TABLE manager_task ADD CONSTRAINT {TASK_KEY} FOREIGN KEY (customer_id, contact_id) "
        "REFERENCES manager_contact (customer_id, id) ON DELETE SET NULL (contact_id)"
    )


def downgrade() -> None:
    op.execute(f"ALTER TABLE manager_task DROP CONSTRAINT {TASK_KEY}")
    op.execute(f"ALTER TABLE community_membership_move DROP CONSTRAINT {MOVE_KEY}")
    for name, (table, columns) in COVERED.items():
        op.execute(f"CREATE INDEX {name} ON {table} ({columns})")
    for table in KEYED:
        _primary_key(table, "id")
    op.execute("ALTER TABLE community_membership_move DROP COLUMN customer_id")
    op.execute(
        f"ALTER TABLE community_membership_move ADD CONSTRAINT {MOVE_KEY_BEFORE} FOREIGN KEY (membership_id) "
        "REFERENCES community_membership (id) ON DELETE CASCADE"
    )
    op.execute(
        f"ALTER TABLE manager_task ADD CONSTRAINT {TASK_KEY_BEFORE} FOREIGN KEY (contact_id) "
        "REFERENCES manager_contact (id) ON DELETE SET NULL"
    )
