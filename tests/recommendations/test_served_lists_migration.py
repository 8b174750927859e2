"""The migration to one row a served list converts a database with lists and items in it, and its downgrade
converts it back: every item kept with its values and its own id, feedback still attributed to converted items."""

import asyncio
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from alembic import command
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.feedback.schemas import FeedbackEventIn
from app.feedback.service import ingest_feedback
from tests.core.migration_sql import run_sql, table_counts, upgraded_with_rows

BEFORE = "cac0ffee0055"
AFTER = "d0c0ffee0056"
A, B, C = uuid.UUID(int=41), uuid.UUID(int=42), uuid.uuid4()

SEED = [
    "INSERT INTO customer (id, external_id, segment, onboarded_at) VALUES "
    "(1, 'SRV-1', 'retail', '2024-01-01'), (2, 'SRV-2', 'retail', '2024-01-01')",
    "INSERT INTO recommendation_list (id, customer_id, channel, strategy, tier_code, served_at) VALUES "
    "(7, 1, 'app', 'personalised', 'gold', '2025-02-01T00:00:00Z'), "
    "(8, 1, 'web', 'holdout_popularity', NULL, now()), (9, 2, 'app', 'personalised', 'silver', now())",
    "INSERT INTO recommendation_item (recommendation_id, list_id, customer_id, product_code, tier_code, rank, score, "
    "propensity, strategy, reasons, served_at) VALUES "
    f"('{A}', 7, 1, 'P1', 'gold', 1, 0.5, 0.1, 'personalised', '[{{\"code\": \"holds\"}}]', '2025-02-01T00:00:00Z'), "
    f"('{B}', 7, 1, 'P2', 'gold', 2, 0.25, 0.05, 'personalised', '[]', '2025-02-01T00:00:00Z'), "
    f"('{C}', 8, 1, 'P3', NULL, 1, 1.123456, 0.999999, 'holdout_popularity', '[]', "
    "(SELECT served_at FROM recommendation_list WHERE id = 8))",
]
ITEMS = """
SELECT i.recommendation_id, l.customer_id, l.channel, i.product_code, i.tier_code, i.rank, i.score, i.propensity,
       i.strategy, i.reasons, i.served_at = l.served_at
FROM recommendation_item i JOIN recommendation_list l ON l.customer_id = i.customer_id AND l.id = i.list_id
ORDER BY l.customer_id, l.served_at, i.rank
"""
EXPECTED = [
    (A, 1, "app", "P1", "gold", 1, Decimal("0.5"), Decimal("0.1"), "personalised", [{"code": "holds"}], True),
    (B, 1, "app", "P2", "gold", 2, Decimal("0.25"), Decimal("0.05"), "personalised", [], True),
    (C, 1, "web", "P3", None, 1, Decimal("1.123456"), Decimal("0.999999"), "holdout_popularity", [], True),
]


async def _ingest(url: str, events: list[tuple[str, uuid.UUID, str]]):
    engine = create_async_engine(url)
    try:
        async with async_sessionmaker(engine)() as session, session.begin():
            return await ingest_feedback(
                session,
                [
                    (
                        n,
                        FeedbackEventIn(
                            event_id=f"e-{n}",
                            recommendation_id=rid,
                            customer_id=customer,
                            type="click",
                            occurred_at=datetime.now(UTC),
                        ),
                    )
                    for n, (customer, rid, _) in enumerate(events)
                ],
            )
    finally:
        await engine.dispose()


def test_lists_and_items_convert_to_one_row_a_list_and_back(scratch_database):
    url = scratch_database()
    config = upgraded_with_rows(url, BEFORE, SEED, AFTER)

    [items, lists, kind, sequence] = asyncio.run(
        run_sql(
            url,
            [
                ITEMS,
                "SELECT customer_id, cardinality(product_codes), legacy_ids, id::text FROM recommendation_list "
                "ORDER BY customer_id, served_at",
                "SELECT relkind::text FROM pg_class WHERE relname = 'recommendation_item'",
                "SELECT count(*) FROM pg_class WHERE relname = 'recommendation_list_id_seq'",
            ],
        )
    )
    assert [tuple(row) for row in items] == EXPECTED
    assert [row[:3] for row in lists] == [(1, 2, [A, B]), (1, 1, [C]), (2, 0, None)]
    assert all(row[3][14] == "7" and row[3][-1] == "0" for row in lists)  # UUIDv7, its rank bits zero
    assert kind[0][0] == "v" and sequence[0][0] == 0
    # feedback on converted items is attributed as before; an unknown id and another customer's item are rejected
    intake = asyncio.run(
        _ingest(url, [("SRV-1", A, ""), ("SRV-1", C, ""), ("SRV-1", uuid.uuid4(), ""), ("SRV-2", B, "")])
    )
    assert intake.accepted == 2
    assert [r["index"] for r in intake.rejections] == [2, 3]
    [stored] = asyncio.run(
        run_sql(
            url,
            [
                "SELECT recommendation_id, product_code, tier_code, channel, strategy FROM feedback_event "
                "ORDER BY event_id"
            ],
        )
    )
    assert [tuple(r) for r in stored] == [
        (A, "P1", "gold", "app", "personalised"),
        (C, "P3", None, "web", "holdout_popularity"),
    ]

    command.downgrade(config, BEFORE)
    [items, kind, next_id] = asyncio.run(
        run_sql(
            url,
            [
                ITEMS,
                "SELECT relkind::text FROM pg_class WHERE relname = 'recommendation_item'",
                "INSERT INTO recommendation_list (customer_id, channel, strategy) VALUES (2, 'app', 'personalised') "
                "RETURNING id",
            ],
        )
    )
    assert [tuple(row) for row in items] == EXPECTED
    assert kind[0][0] == "p" and next_id[0][0] == 4
    [in_default] = asyncio.run(  # each item in its list's partition
        run_sql(
            url,
            [
                "SELECT count(*) FROM recommendation_item_default i JOIN recommendation_list_default l "
                "ON l.customer_id = i.customer_id AND l.id = i.list_id"
            ],
        )
    )
    assert in_default[0][0] == table_counts(url, ["recommendation_item_default"])["recommendation_item_default"]
    command.upgrade(config, AFTER)  # and up again, the list served in between included
    assert table_counts(url, ["recommendation_list", "recommendation_item"]) == {
        "recommendation_list": 4,
        "recommendation_item": 3,
    }
