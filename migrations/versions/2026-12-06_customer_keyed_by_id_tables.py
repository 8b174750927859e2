"""customer_id in the primary keys of complaints (and their history), survey answers, worklist tasks and community
activity events

Revision ID: b4c0ffee0044
Revises: a7c0ffee0036
Create Date: 2026-12-06

Ready for distribution by customer_id (README, "Scaling"; tests/test_citus_ready.py), as a5c0ffee0032 did for
memberships, benefit uses and contacts:
- complaint, survey_response and manager_task were keyed by their own id alone because their routes address them
  by id without the customer (GET /v1/feedback/complaints/{complaint_id}, GET /v1/feedback/surveys/{survey_id},
  PATCH /v1/manager-tasks/{task_id}: unchanged). Their primary key becomes (customer_id, id); `id` keeps its
  sequence, so it stays unique in fact, and a plain index on id serves those lookups (under Citus they run on
  every shard). complaint's index (customer_id, id), now the key, goes.
- complaint_transition referred to its complaint by id alone: it gains the complaint's customer_id (filled from
  the complaint), its key becomes (customer_id, id), its foreign key (customer_id, complaint_id) and its index
  (customer_id, complaint_id, id).
- community_activity_event was unique per (community_id, event_id), across customers; it is read per customer (the
  tiering's community_active, the erasure) and so kept with the customer: key (customer_id, id), unique per
  (customer_id, community_id, event_id). A retry (the same customer's event) still changes nothing; the same
  event id sent for another customer of the community is now that customer's event, where it was a duplicate. The
  rows of a database are unique under the old key, so under the new one too.

Each new key is built under an exclusive lock on its table: fine for the demo size; a bank's database would build
the unique indexes CONCURRENTLY first and attach them with ADD CONSTRAINT ... USING INDEX. The downgrade restores
the keys on id alone, the indexes and the foreign key on id, drops complaint_transition.customer_id, and keeps of
community activity events sharing a (community_id, event_id) the first stored (the lowest id), as the old key
would have.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b4c0ffee0044"
down_revision: str | None = "a7c0ffee0036"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KEYED = ("complaint", "complaint_transition", "survey_response", "manager_task", "community_activity_event")
BY_ID = ("complaint", "survey_response", "manager_task")  # addressed by id alone: a plain index on id
TRANSITION_KEY_BEFORE = "fk_complaint_transition_complaint_id_complaint"
TRANSITION_KEY = "fk_complaint_transition_customer_id_complaint"
EVENT_UNIQUE_BEFORE = "uq_community_activity_event_community_event"
EVENT_UNIQUE = "uq_community_activity_event_event"


def _primary_key(table: str, columns: str) -> None:
    op.execute(f"ALTER TABLE {table} DROP CONSTRAINT pk_{table}, ADD CONSTRAINT pk_{table} PRIMARY KEY ({columns})")


def upgrade() -> None:
    op.execute(f"ALTER TABLE complaint_transition DROP CONSTRAINT {TRANSITION_KEY_BEFORE}")
    op.execute("ALTER TABLE complaint_transition ADD COLUMN customer_id BIGINT")
    op.execute(
        "UPDATE complaint_transition t SET customer_id = c.customer_id FROM complaint c WHERE c.id = t.complaint_id"
    )
    op.execute("ALTER TABLE complaint_transition ALTER COLUMN customer_id SET NOT NULL")
    for table in KEYED:
        _primary_key(table, "customer_id, id")
    for table in BY_ID:
        op.execute(f"CREATE INDEX ix_{table}_id ON {table} (id)")
    op.execute("DROP INDEX ix_complaint_customer")
    op.execute("DROP INDEX ix_complaint_transition_complaint")
    op.execute("CREATE INDEX ix_complaint_transition_complaint ON complaint_transition (customer_id, complaint_id, id)")
    op.execute(
        f"ALTER TABLE complaint_transition ADD CONSTRAINT {TRANSITION_KEY} FOREIGN KEY (customer_id, complaint_id) "
        "REFERENCES complaint (customer_id, id) ON DELETE CASCADE"
    )
    op.execute(f"DROP INDEX {EVENT_UNIQUE_BEFORE}")
    op.execute(f"CREATE UNIQUE INDEX {EVENT_UNIQUE} ON community_activity_event (customer_id, community_id, event_id)")


def downgrade() -> None:
    op.execute(
        "DELETE FROM community_activity_event e USING community_activity_event first "
        "WHERE first.community_id = e.community_id AND first.event_id = e.event_id AND first.id < e.id"
    )
    op.execute(f"DROP INDEX {EVENT_UNIQUE}")
    op.execute(f"CREATE UNIQUE INDEX {EVENT_UNIQUE_BEFORE} ON community_activity_event (community_id, event_id)")
    op.execute(f"ALTER TABLE complaint_transition DROP CONSTRAINT {TRANSITION_KEY}")
    op.execute("DROP INDEX ix_complaint_transition_complaint")
    op.execute("CREATE INDEX ix_complaint_transition_complaint ON complaint_transition (complaint_id, id)")
    op.execute("CREATE INDEX ix_complaint_customer ON complaint (customer_id, id)")
    for table in BY_ID:
        op.execute(f"DROP INDEX ix_{table}_id")
    for table in KEYED:
        _primary_key(table, "id")
    op.execute("ALTER TABLE complaint_transition DROP COLUMN customer_id")
    op.execute(
        f"ALTER TABLE complaint_transition ADD CONSTRAINT {TRANSITION_KEY_BEFORE} FOREIGN KEY (complaint_id) "
        "REFERENCES complaint (id) ON DELETE CASCADE"
    )
