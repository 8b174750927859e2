"""The migration that keeps a referral with its referrer (c6c0ffee0051) converts a database with referrals in it,
and its downgrade converts it back: every row kept, the key (referrer_id, id) as the model says, the referee's
foreign key gone (a referee on another shard) and restored, the sequence carrying on."""

import asyncio

from alembic import command

from app.models import metadata
from tests.core.migration_sql import key_columns, run_sql, table_counts, upgraded_with_rows

BEFORE = "c1c0ffee0046"
AFTER = "c6c0ffee0051"
REFEREE_KEY = "SELECT count(*) FROM pg_constraint WHERE conname = 'fk_referral_referee_id_customer'"

SEED = [
    "INSERT INTO customer (id, external_id, segment, onboarded_at) VALUES "
    "(1, 'REF-1', 'retail', '2024-01-01'), (2, 'REF-2', 'retail', '2024-01-01'), (3, 'REF-3', 'retail', '2024-01-01')",
    "INSERT INTO referral (referrer_id, event_id, referee_id, status, referred_at) VALUES "
    "(1, 'r-1', 2, 'onboarded', now()), (1, 'r-2', NULL, 'referred', now()), (3, 'r-1', 1, 'referred', now())",
]


def test_referrals_kept_keyed_by_referrer_and_back(scratch_database):
    url = scratch_database()
    config = upgraded_with_rows(url, BEFORE, SEED, AFTER)
    assert table_counts(url, {"referral": 3}) == {"referral": 3}
    assert key_columns(url, [("referral", "pk_referral")]) == ["referrer_id,id"]
    assert [c.name for c in metadata.tables["referral"].primary_key.columns] == ["referrer_id", "id"]
    [referee_key, index, by_id, fresh] = asyncio.run(
        run_sql(
            url,
            [
                REFEREE_KEY,
                "SELECT indexdef LIKE '%(id)' FROM pg_indexes WHERE indexname = 'ix_referral_id'",
                "SELECT referrer_id, event_id, referee_id FROM referral ORDER BY id",
                "INSERT INTO referral (referrer_id, event_id, referee_id, referred_at) VALUES (2, 'r-9', 99, now()) "
                "RETURNING id > 3",  # a referee on another shard is not checked by a foreign key; the id carries on
            ],
        )
    )
    assert referee_key == [(0,)] and index == [(True,)] and fresh == [(True,)]
    assert by_id == [(1, "r-1", 2), (1, "r-2", None), (3, "r-1", 1)]

    command.downgrade(config, BEFORE)  # the referee that names no customer is cleared, the foreign key back
    assert key_columns(url, [("referral", "pk_referral")]) == ["id"]
    [referee_key, rows] = asyncio.run(
        run_sql(url, [REFEREE_KEY, "SELECT referrer_id, event_id, referee_id FROM referral ORDER BY id"])
    )
    assert referee_key == [(1,)]
    assert rows == [(1, "r-1", 2), (1, "r-2", None), (3, "r-1", 1), (2, "r-9", None)]
    command.upgrade(config, AFTER)
    assert table_counts(url, {"referral": 4}) == {"referral": 4}
