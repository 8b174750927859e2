"""A small monthly holdings history the learned ranker can learn from: current accounts for everyone, savings
accounts opened by customers with a high income, gold cards paused for a month and taken back."""

import json
import random
from datetime import UTC, date, datetime

from app.core.db import driver_connection
from tests.factories import add_products, inserting_customers

MONTHS = [date(2026, m, 28) for m in range(1, 7)]  # January .. June 2026


def holdings_by_month(customers: int, seed: int = 5) -> tuple[dict[int, dict], list[dict[date, set[str]]]]:
    rng = random.Random(seed)
    profiles, histories = {}, []
    for i in range(customers):
        rich = rng.random() < 0.5
        profiles[i] = {"income": 90000 if rich else 20000, "entry_channel": rng.choice(["KAT", "KFC", "KHE"])}
        saves_from = rng.randrange(1, 7) if rich and rng.random() < 0.7 else 99
        card, pause = rng.random() < 0.4, rng.randrange(1, 5)
        history = {}
        for m, day in enumerate(MONTHS):
            held = {"current_account"}
            if m >= saves_from:
                held.add("savings_account")
            if card and m != pause:
                held.add("credit_card_gold")
            if not rich and m >= 4 and rng.random() < 0.15:
                held.add("life_insurance")
            history[day] = held
        histories.append(history)
    return profiles, histories


async def load_history(session, customers: int = 300, seed: int = 5) -> list[int]:
    """Products, custom attributes, customers and their month-end reports (in the session's transaction)."""
    await add_products(session)
    conn = await driver_connection(session)
    await conn.execute(
        "INSERT INTO custom_attribute_definition (name, type) VALUES ('income', 'number'), ('entry_channel', 'string')"
    )
    profiles, histories = holdings_by_month(customers, seed)
    ids = [
        r[0]
        for r in await conn.fetch(
            inserting_customers(
                "INSERT INTO customer (external_id, segment, birth_date, onboarded_at, marketing_consent, attributes) "
                "SELECT 'R' || i, 'retail', date '1970-01-01' + i * 30, $1::timestamptz, true, a::jsonb "
                "FROM unnest($2::int[], $3::text[]) AS t(i, a) ORDER BY i"
            ),
            datetime(2020, 1, 1, tzinfo=UTC),
            list(range(customers)),
            [json.dumps(profiles[i]) for i in range(customers)],
        )
    ]
    await conn.copy_records_to_table(
        "holding_balance",
        columns=["customer_id", "product_code", "as_of", "balance"],
        records=[(ids[i], p, day, 1) for i, h in enumerate(histories) for day, held in h.items() for p in sorted(held)],
    )
    await conn.copy_records_to_table(
        "customer_aum_daily",
        columns=["customer_id", "day", "aum"],
        records=[(ids[i], day, 1) for i, h in enumerate(histories) for day in h],
    )
    return ids
