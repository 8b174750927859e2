"""referral kept with its referrer: primary key (referrer_id, id), a plain index on id, no foreign key on the
referee

Revision ID: c6c0ffee0051
Revises: c1c0ffee0046
Create Date: 2026-12-06

Ready for distribution by the customer's id (README, "Scaling"; tests/test_citus_ready.py), as b4c0ffee0044 did
for complaints: a referral lives on its referrer's shard. Its routes name it by id alone (GET
/v1/referrals/{referral_id}, POST .../moves: unchanged): `id` keeps its sequence, so it stays unique in fact, and a
plain index on id finds the referrer (app.core.db.customer_of), after which the lock and the write name
(referrer_id, id). The referee is another customer (another shard): its foreign key goes. The statements that set
referee_id name a customer they have just read (not erased), and the referee's erasure clears it, as the foreign
key's ON DELETE SET NULL did for a deleted customer (the service never deletes a customer row: erasure keeps it).
The downgrade clears referee ids that name no customer before restoring the foreign key.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "c6c0ffee0051"
down_revision: str | None = "c1c0ffee0046"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REFEREE_KEY = "fk_referral_referee_id_customer"


def upgrade() -> None:
    op.execute(f"ALTER TABLE referral DROP CONSTRAINT {REFEREE_KEY}")
    op.execute(
        "ALTER TABLE referral DROP CONSTRAINT pk_referral, ADD CONSTRAINT pk_referral PRIMARY KEY (referrer_id, id)"
    )
    op.execute("CREATE INDEX ix_referral_id ON referral (id)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_referral_id")
    op.execute("ALTER TABLE referral DROP CONSTRAINT pk_referral, ADD CONSTRAINT pk_referral PRIMARY KEY (id)")
    op.execute(
        "UPDATE referral r SET referee_id = NULL WHERE referee_id IS NOT NULL "
        "AND NOT EXISTS (SELECT FROM customer c WHERE c.id = r.referee_id)"
    )
    op.execute(
        f"ALTER TABLE referral ADD CONSTRAINT {REFEREE_KEY} FOREIGN KEY (referee_id) REFERENCES customer (id) "
        "ON DELETE SET NULL"
    )
