"""The migration that puts customer_id into the keys of the tables addressed by id (b4c0ffee0044) converts a
database with rows in it, and its downgrade converts it back: every row kept, a complaint's history given its
complaint's customer, the keys, indexes and foreign keys as the models say, sequences carrying on."""

import asyncio

import pytest
from alembic import command
from sqlalchemy.exc import IntegrityError

from app.models import metadata
from tests.core.migration_sql import key_columns as _keys
from tests.core.migration_sql import run_sql, table_counts, upgraded_with_rows

BEFORE = "a7c0ffee0036"
AFTER = "b4c0ffee0044"

SEED = [
    "INSERT INTO customer (id, external_id, segment, onboarded_at) VALUES "
    "(1, 'KEY-1', 'retail', '2024-01-01'), (2, 'KEY-2', 'retail', '2024-01-01')",
    "INSERT INTO community (id, key, name, owner_team, audience) VALUES (1, 'club', 'Club', 'team', '{}')",
    "INSERT INTO complaint (customer_id, event_id, category, channel, description, opened_at) VALUES "
    "(1, 'c-1', 'fees', 'app', 'too dear', now()), (2, 'c-1', 'app', 'app', 'slow', now())",
    "INSERT INTO complaint_transition (complaint_id, from_status, to_status, actor) "
    "SELECT c.id, m.from_status, m.to_status, m.actor FROM complaint c "
    "JOIN (VALUES (1, NULL, 'open', 'api'), (2, NULL, 'open', 'api'), (2, 'open', 'in_progress', 'admin')) "
    "AS m(customer_id, from_status, to_status, actor) ON m.customer_id = c.customer_id",
    "INSERT INTO survey_response (customer_id, event_id, kind, score, channel, touchpoint, occurred_at) VALUES "
    "(1, 's-1', 'nps', 9, 'app', 'login', now()), (2, 's-1', 'csat', 4, 'app', 'login', now())",
    "INSERT INTO manager_task (customer_id, kind, period, reason, due_on) VALUES "
    "(2, 'gone_quiet', '2026-11', 'quiet', '2026-12-01')",
    "INSERT INTO community_activity_event (community_id, customer_id, event_id, kind, occurred_at) VALUES "
    "(1, 1, 'post-1', 'post', now()), (1, 2, 'post-2', 'reply', now())",
]
COUNTS = {
    "complaint": 2,
    "complaint_transition": 3,
    "survey_response": 2,
    "manager_task": 1,
    "community_activity_event": 2,
}
KEYED = list(COUNTS)
INDEXES = """
SELECT indexname, regexp_replace(indexdef, '^.* USING btree ', '') FROM pg_indexes
WHERE indexname IN ('ix_complaint_id', 'ix_survey_response_id', 'ix_manager_task_id', 'ix_complaint_customer',
                    'ix_complaint_transition_complaint', 'uq_community_activity_event_event',
                    'uq_community_activity_event_community_event')
ORDER BY indexname
"""


def test_rows_kept_keys_gain_customer_id_and_back(scratch_database):
    url = scratch_database()
    config = upgraded_with_rows(url, BEFORE, SEED, AFTER)
    assert table_counts(url, COUNTS) == COUNTS
    assert _keys(url, [(t, f"pk_{t}") for t in KEYED]) == ["customer_id,id"] * len(KEYED)
    for table in KEYED:  # the models say the same (autogenerate does not compare primary keys)
        assert [c.name for c in metadata.tables[table].primary_key.columns] == ["customer_id", "id"]
    assert _keys(url, [("complaint_transition", "fk_complaint_transition_customer_id_complaint")]) == [
        "customer_id,complaint_id"
    ]
    [history, indexes] = asyncio.run(
        run_sql(
            url,
            [
                "SELECT c.customer_id, t.customer_id FROM complaint_transition t "
                "JOIN complaint c ON c.id = t.complaint_id ORDER BY t.id",
                INDEXES,
            ],
        )
    )
    assert history == [(1, 1), (2, 2), (2, 2)]  # each move has its complaint's customer
    assert indexes == [
        ("ix_complaint_id", "(id)"),
        ("ix_complaint_transition_complaint", "(customer_id, complaint_id, id)"),
        ("ix_manager_task_id", "(id)"),
        ("ix_survey_response_id", "(id)"),
        ("uq_community_activity_event_event", "(customer_id, community_id, event_id)"),
    ]
    with pytest.raises(IntegrityError):  # a move may not name another customer's complaint
        asyncio.run(
            run_sql(
                url,
                [
                    "INSERT INTO complaint_transition (customer_id, complaint_id, to_status, actor) "
                    "SELECT 1, id, 'resolved', 'admin' FROM complaint WHERE customer_id = 2"
                ],
            )
        )
    with pytest.raises(IntegrityError):  # the same customer's event once
        asyncio.run(
            run_sql(
                url,
                [
                    "INSERT INTO community_activity_event (community_id, customer_id, event_id, kind, occurred_at) "
                    "VALUES (1, 1, 'post-1', 'post', now())"
                ],
            )
        )
    [new_ids, _, _] = asyncio.run(
        run_sql(
            url,
            [
                "SELECT (SELECT max(id) FROM complaint) < nextval('complaint_id_seq') "
                "AND (SELECT max(id) FROM survey_response) < nextval('survey_response_id_seq') "
                "AND (SELECT max(id) FROM manager_task) < nextval('manager_task_id_seq') "
                "AND (SELECT max(id) FROM complaint_transition) < nextval('complaint_transition_id_seq')",
                # another customer's event with an id the community has seen: that customer's own now
                "INSERT INTO community_activity_event (community_id, customer_id, event_id, kind, occurred_at) "
                "VALUES (1, 2, 'post-1', 'share', now())",
                "DELETE FROM complaint WHERE customer_id = 1",  # its history goes with it
            ],
        )
    )
    assert new_ids == [(True,)]  # the sequences carry on
    after = {**COUNTS, "complaint": 1, "complaint_transition": 2, "community_activity_event": 3}
    assert table_counts(url, COUNTS) == after

    command.downgrade(config, BEFORE)
    expected = {**COUNTS, "complaint": 1, "complaint_transition": 2}  # of post-1 the first stored is kept
    assert table_counts(url, COUNTS) == expected
    assert _keys(url, [(t, f"pk_{t}") for t in KEYED]) == ["id"] * len(KEYED)
    assert _keys(url, [("complaint_transition", "fk_complaint_transition_complaint_id_complaint")]) == ["complaint_id"]
    [indexes, columns, events] = asyncio.run(
        run_sql(
            url,
            [
                INDEXES,
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'complaint_transition' "
                "AND column_name = 'customer_id'",
                "SELECT customer_id, event_id FROM community_activity_event ORDER BY id",
            ],
        )
    )
    assert indexes == [
        ("ix_complaint_customer", "(customer_id, id)"),
        ("ix_complaint_transition_complaint", "(complaint_id, id)"),
        ("uq_community_activity_event_community_event", "(community_id, event_id)"),
    ]
    assert columns == [(0,)]
    assert events == [(1, "post-1"), (2, "post-2")]
    command.upgrade(config, AFTER)
    assert table_counts(url, COUNTS) == expected
