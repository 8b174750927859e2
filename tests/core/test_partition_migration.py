"""The migration to monthly partitions converts a database with rows in it, and its downgrade converts it back:
every row kept, each in the partition of its month, sequences carrying on, and duplicates still refused."""

import asyncio
import uuid

from alembic import command

from app.core.migrations import alembic_config
from tests.core.migration_sql import run_sql, table_counts

BEFORE = "f1c0ffee0022"
PARTITIONED = "f9c0ffee0030"

SEED = [
    "INSERT INTO customer (id, external_id, segment, onboarded_at) VALUES (1, 'PART-1', 'retail', '2024-01-01')",
    "INSERT INTO customer_event (customer_id, event_id, kind, occurred_at) VALUES "
    "(1, 'e-old', 'login', '2024-03-10T08:00:00Z'), (1, 'e-now', 'login', now())",
    "INSERT INTO tier_transition (customer_id, policy_id, version_id, to_code, direction, reason, at) VALUES "
    "(1, 1, 1, 'gold', 'initial', 'rules', '2025-06-30T23:59:59Z'), (1, 1, 1, 'silver', 'downgrade', 'rules', now())",
    "INSERT INTO audit_event (actor, action, entity_type, entity_key, at) VALUES "
    "('admin', 'create', 'product', 'P1', '2023-11-05T00:00:00Z')",
    "INSERT INTO recommendation_list (id, customer_id, channel, strategy, served_at) VALUES "
    "(7, 1, 'app', 'personalised', '2025-02-01T00:00:00Z')",
    f"INSERT INTO recommendation_item (recommendation_id, list_id, customer_id, product_code, rank, score, "
    f"propensity, strategy, reasons, served_at) VALUES ('{uuid.UUID(int=42)}', 7, 1, 'P1', 1, 0.5, 0.1, "
    "'personalised', '[]', '2025-02-01T00:00:00Z')",
    f"INSERT INTO feedback_event (customer_id, event_id, recommendation_id, product_code, channel, strategy, kind, "
    f"occurred_at) VALUES (1, 'f-1', '{uuid.UUID(int=42)}', 'P1', 'app', 'personalised', 'click', "
    "'2025-02-02T00:00:00Z')",
]
COUNTS = {
    "customer_event": 2,
    "tier_transition": 2,
    "audit_event": 1,
    "recommendation_list": 1,
    "recommendation_item": 1,
    "feedback_event": 1,
}


def test_existing_rows_move_into_their_months_and_back(scratch_database):
    url = scratch_database()
    config = alembic_config(url)
    command.upgrade(config, BEFORE)
    asyncio.run(run_sql(url, SEED))

    command.upgrade(config, PARTITIONED)
    assert table_counts(url, COUNTS) == COUNTS
    [old_event, kind, old_audit, months, default_rows] = asyncio.run(
        run_sql(
            url,
            [
                "SELECT count(*) FROM customer_event_p202403 WHERE event_id = 'e-old'",
                "SELECT relkind::text FROM pg_class WHERE relname = 'recommendation_item'",
                "SELECT count(*) FROM audit_event_p202311",
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'tier_transition'::regclass",
                "SELECT count(*) FROM tier_transition_default",
            ],
        )
    )
    assert old_event[0][0] == 1 and old_audit[0][0] == 1 and default_rows[0][0] == 0
    assert kind[0][0] == "p"
    assert months[0][0] >= 19  # June 2025 to three months ahead of now, and the default partition
    # the sequence carries on in the new table, and a retried event is still refused
    [new_id, retried] = asyncio.run(
        run_sql(
            url,
            [
                "INSERT INTO audit_event (actor, action, entity_type, entity_key) "
                "VALUES ('admin', 'edit', 'product', 'P1') RETURNING id",
                "INSERT INTO customer_event (customer_id, event_id, kind, occurred_at) "
                "VALUES (1, 'e-old', 'login', '2024-03-10T08:00:00Z') "
                "ON CONFLICT (customer_id, event_id, occurred_at) DO NOTHING RETURNING 1",
            ],
        )
    )
    assert new_id[0][0] == 2 and retried == []

    command.downgrade(config, BEFORE)
    assert table_counts(url, COUNTS) == {**COUNTS, "audit_event": 2}
    [kind, key] = asyncio.run(
        run_sql(
            url,
            [
                "SELECT relkind::text FROM pg_class WHERE relname = 'recommendation_item'",
                "SELECT count(*) FROM pg_constraint WHERE conname = "
                "'fk_feedback_event_recommendation_id_recommendation_item'",
            ],
        )
    )
    assert kind[0][0] == "r" and key[0][0] == 1
