"""The migration that puts customer_id into the primary keys (a5c0ffee0032) converts a database with rows in it,
and its downgrade converts it back: every row kept, the moves given their membership's customer, the keys and
foreign keys as the models say, sequences carrying on, and a task's contact still cleared when it goes."""

import asyncio

import pytest
from alembic import command
from sqlalchemy.exc import IntegrityError

from app.models import metadata
from tests.core.migration_sql import key_columns as _keys
from tests.core.migration_sql import run_sql, table_counts, upgraded_with_rows

BEFORE = "f9c0ffee0030"
AFTER = "a5c0ffee0032"

SEED = [
    "INSERT INTO customer (id, external_id, segment, onboarded_at) VALUES "
    "(1, 'KEY-1', 'retail', '2024-01-01'), (2, 'KEY-2', 'retail', '2024-01-01')",
    "INSERT INTO community (id, key, name, owner_team, audience) VALUES (1, 'club', 'Club', 'team', '{}')",
    "INSERT INTO activity (id, key, name, kind, owner_team, audience, channel, capacity, starts_at, ends_at) "
    "VALUES (1, 'talk', 'Talk', 'lecture', 'team', '{}', 'online', 10, now(), now() + interval '1 hour')",
    "INSERT INTO community_membership (id, community_id, customer_id, state, channel, invited_at) VALUES "
    "(10, 1, 1, 'invited', 'mobile', now()), (11, 1, 2, 'invited', 'mobile', now())",
    "INSERT INTO community_membership_move (membership_id, community_id, to_state, channel, at) VALUES "
    "(10, 1, 'invited', 'mobile', now()), (11, 1, 'invited', 'mobile', now()), (11, 1, 'joined', 'mobile', now())",
    "INSERT INTO activity_participation (activity_id, customer_id, state, channel, invited_at) VALUES "
    "(1, 1, 'invited', 'mobile', now())",
    "INSERT INTO benefit (id, code, kind, unit, channels, texts) VALUES (1, 'lounge', 'service', 'none', '{}', '{}')",
    "INSERT INTO benefit_use (customer_id, benefit_id, policy_key, tier) VALUES (1, 1, 'wealth', 'gold')",
    "INSERT INTO manager_assignment_change (customer_id, action, actor) VALUES (2, 'released', 'admin')",
    "INSERT INTO manager_contact (id, customer_id, kind, channel, outcome, contacted_at, recorded_by) VALUES "
    "(5, 2, 'call', 'phone', 'reached', now(), 'admin')",
    "INSERT INTO manager_task (customer_id, kind, period, reason, due_on, state, contact_id) VALUES "
    "(2, 'gone_quiet', '2026-11', 'quiet', '2026-12-01', 'done', 5)",
]
COUNTS = {
    "community_membership": 2,
    "community_membership_move": 3,
    "activity_participation": 1,
    "benefit_use": 1,
    "manager_assignment_change": 1,
    "manager_contact": 1,
    "manager_task": 1,
}


def test_rows_kept_keys_gain_customer_id_and_back(scratch_database):
    url = scratch_database()
    config = upgraded_with_rows(url, BEFORE, SEED, AFTER)
    assert table_counts(url, COUNTS) == COUNTS
    keyed = [t for t in COUNTS if t != "manager_task"]
    assert _keys(url, [(t, f"pk_{t}") for t in keyed]) == ["customer_id,id"] * len(keyed)
    for table in keyed:  # the models say the same (autogenerate does not compare primary keys)
        assert [c.name for c in metadata.tables[table].primary_key.columns] == ["customer_id", "id"]
    assert _keys(
        url,
        [
            ("community_membership_move", "fk_community_membership_move_customer_id_community_membership"),
            ("manager_task", "fk_manager_task_customer_id_manager_contact"),
        ],
    ) == ["customer_id,membership_id", "customer_id,contact_id"]
    with pytest.raises(IntegrityError):  # a task may not name another customer's contact
        asyncio.run(run_sql(url, ["UPDATE manager_task SET customer_id = 1"]))
    [moves, new_use, _, cleared] = asyncio.run(
        run_sql(
            url,
            [
                "SELECT membership_id, customer_id FROM community_membership_move ORDER BY id",
                "INSERT INTO benefit_use (customer_id, benefit_id, policy_key, tier) VALUES (2, 1, 'wealth', 'gold') "
                "RETURNING id",
                "DELETE FROM manager_contact WHERE id = 5",
                "SELECT customer_id, contact_id, state FROM manager_task",
            ],
        )
    )
    assert moves == [(10, 1), (11, 2), (11, 2)]
    assert new_use == [(2,)]  # the sequence carries on
    assert cleared == [(2, None, "done")]  # only contact_id cleared

    command.downgrade(config, BEFORE)
    expected = {**COUNTS, "benefit_use": 2, "manager_contact": 0}
    assert table_counts(url, COUNTS) == expected
    assert _keys(url, [(t, f"pk_{t}") for t in keyed]) == ["id"] * len(keyed)
    assert _keys(
        url,
        [
            ("community_membership_move", "fk_community_membership_move_membership_id_community_membership"),
            ("manager_task", "fk_manager_task_contact_id_manager_contact"),
            ("benefit_use", "fk_benefit_use_customer_id_customer"),
        ],
    ) == ["membership_id", "contact_id", "customer_id"]
    [indexes, move_columns] = asyncio.run(
        run_sql(
            url,
            [
                "SELECT count(*) FROM pg_indexes WHERE indexname IN ('ix_activity_participation_customer', "
                "'ix_benefit_use_customer', 'ix_community_membership_customer', "
                "'ix_manager_assignment_change_customer', 'ix_manager_contact_customer')",
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'community_membership_move' "
                "AND column_name = 'customer_id'",
            ],
        )
    )
    assert indexes == [(5,)]
    assert move_columns == [(0,)]
    command.upgrade(config, AFTER)
    assert table_counts(url, COUNTS) == expected
