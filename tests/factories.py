"""Test data builders: products and customers added through the session or the API, and served lists."""

import json
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from app.products.models import Product
from app.recommendations.served import item_ids, new_list_id

PRODUCTS = [
    ("current_account", "deposit", 1),
    ("savings_account", "deposit", 1),
    ("term_deposit_12m", "deposit", 1),
    ("balanced_fund", "fund", 3),
    ("equity_fund", "fund", 4),
    ("private_portfolio", "wealth", 4),
    ("life_insurance", "insurance", 2),
    ("mortgage", "loan", 2),
    ("credit_card_gold", "card", 1),
]


async def add_products(session) -> None:
    session.add_all(
        Product(
            code=code,
            name=code.replace("_", " ").title(),
            category=category,
            risk_level=risk,
            channels=["mobile", "web"],
            min_amount=Decimal("0"),
        )
        for code, category, risk in PRODUCTS
    )
    await session.flush()


def customer_body(**overrides) -> dict:
    body = {
        "segment": "retail",
        "display_name": "Test Person",
        "birth_date": "1980-05-17",
        "onboarded_at": "2015-03-01T10:00:00Z",
        "risk_level": 3,
        "risk_assessed_at": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "marketing_consent": True,
    }
    body.update(overrides)
    return body


def day_in(days: int) -> date:
    """The UTC day `days` after today (the service's days are UTC days), or the day after it when that is
    29 February: care-calendar tests write it into other years (birth dates, onboarding days), most without one."""
    day = datetime.now(UTC).date() + timedelta(days=days)
    return day + timedelta(days=1) if (day.month, day.day) == (2, 29) else day


WEALTH_GRACE_DAYS = 90
ENCRYPTION_KEY = "dGVzdHMtb25seS1lbmNyeXB0aW9uLWtleS0wMTIzNDU"  # base64url of 32 bytes: production-mode test servers

# A wealth policy's tiers for tests: first match wins, the last is unconditional.
WEALTH_TIERS = [
    {
        "code": "private",
        "label": "Private",
        "rank": 40,
        "condition": {"attr": "aum_avg_3m", "op": "gte", "value": 10000000},
    },
    {
        "code": "wealth",
        "label": "Wealth",
        "rank": 30,
        "condition": {
            "all": [
                {"attr": "aum_avg_3m", "op": "gte", "value": 500000},
                {"attr": "tenure_months", "op": "gte", "value": 12},
            ]
        },
    },
    {"code": "gold", "label": "Gold", "rank": 20, "condition": {"attr": "aum_avg_3m", "op": "gte", "value": 50000}},
    {"code": "mass", "label": "Everyday", "rank": 10, "condition": {"always": True}},
]


# Tables that name a customer without a foreign key (the intake's: a trigger call per row was the cost; the map of
# external ids: not co-located with customer under Citus): deleting a customer does not cascade into them, so
# tests that commit customers delete these rows first.
WITHOUT_FOREIGN_KEY = ("retier_mark", "customer_activity_daily", "customer_external_id")


def inserting_customers(insert: str, returning: str = "id") -> str:
    """An `INSERT INTO customer ...` statement (without RETURNING) that also writes each new row's external id to
    customer_external_id, as every writer of customers does (the map holds external ids unique); it returns
    `returning` of the new rows, in the order inserted."""
    return (
        f"WITH c AS ({insert} RETURNING *), m AS (INSERT INTO customer_external_id (external_id, customer_id) "
        f"SELECT external_id, id FROM c) SELECT {returning} FROM c"
    )


async def external_id_map_errors(session, customer_ids) -> list[int]:
    """The customers among `customer_ids` whose row and customer_external_id disagree (no row there, another
    external id, or a second row naming the customer): [] when the map is true for them."""
    rows = await session.scalars(
        text(
            "SELECT coalesce(c.id, m.customer_id) FROM customer c FULL JOIN customer_external_id m "
            "ON m.customer_id = c.id AND m.external_id = c.external_id "
            "WHERE (c.id = ANY(:ids) OR m.customer_id = ANY(:ids)) AND (c.id IS NULL OR m.customer_id IS NULL)"
        ),
        {"ids": list(customer_ids)},
    )
    return sorted(rows.all())


async def delete_customers(conn, where: str, params: dict) -> None:
    """Delete committed test customers matching `where` (SQL over customer's columns) with every row of theirs."""
    await conn.execute(  # a referral names its referee with no foreign key (the referee's erasure clears it)
        text(f"UPDATE referral SET referee_id = NULL WHERE referee_id IN (SELECT id FROM customer WHERE {where})"),
        params,
    )
    for table in WITHOUT_FOREIGN_KEY:
        await conn.execute(
            text(f"DELETE FROM {table} WHERE customer_id IN (SELECT id FROM customer WHERE {where})"), params
        )
    await conn.execute(  # the import's mark sets name customers by id, with no foreign key
        text(
            "UPDATE retier_mark_set SET customer_ids = ARRAY(SELECT i FROM unnest(customer_ids) i "
            f"WHERE i NOT IN (SELECT id FROM customer WHERE {where})) "
            f"WHERE customer_ids && ARRAY(SELECT id FROM customer WHERE {where})"
        ),
        params,
    )
    await conn.execute(text("DELETE FROM retier_mark_set WHERE cardinality(customer_ids) = 0"))
    await conn.execute(text(f"DELETE FROM customer WHERE {where}"), params)


def state_query(name: str) -> str:
    """One part of a customer's (`c`) state, for state_of."""
    return {
        "holdings": "SELECT h.product_code, h.opened_at, h.balance, h.as_of FROM holding h WHERE h.customer_id = c.id",
        "history": "SELECT b.product_code, b.as_of, b.balance FROM holding_balance b WHERE b.customer_id = c.id",
        "aum": "SELECT d.day, d.aum FROM customer_aum_daily d WHERE d.customer_id = c.id",
        "tiers": "SELECT p.key, a.tier_code, a.qualified_code, a.lower_since IS NULL, a.facts::text, a.lean_tail "
        "IS NOT NULL FROM tier_assignment a JOIN tier_policy p ON p.id = a.policy_id WHERE a.customer_id = c.id",
        "transitions": "SELECT p.key, t.from_code, t.to_code, t.direction, t.reason FROM tier_transition t "
        "JOIN tier_policy p ON p.id = t.policy_id WHERE t.customer_id = c.id",
    }[name]


async def state_of(session, prefix: str, names=("holdings", "history", "aum", "tiers", "transitions")) -> dict:
    """Per customer whose external id is the prefix then a number (keyed by the number): each named part of their
    state as sorted row texts, without times, so that two paths to the same data compare equal."""
    out = {}
    for name in names:
        rows = await session.execute(
            text(
                f"SELECT substr(c.external_id, {len(prefix) + 1})::int, "
                "array_agg(row(x.*)::text ORDER BY row(x.*)::text) "
                f"FROM customer c CROSS JOIN LATERAL ({state_query(name)}) x "
                "WHERE c.external_id LIKE :prefix GROUP BY 1"
            ),
            {"prefix": f"{prefix}%"},
        )
        for number, values in rows.all():
            out.setdefault(number, {})[name] = values
    return out


_SERVE_LIST = text("""
INSERT INTO recommendation_list (id, customer_id, channel, strategy, tier_code, served_at, product_codes, scores,
                                 propensities, reasons)
VALUES (:id, :customer_id, :channel, :strategy, :tier_code, coalesce(CAST(:served_at AS timestamptz), now()),
        CAST(:products AS text[]), CAST(:scores AS numeric[]), CAST(:propensities AS numeric[]),
        CAST(:reasons AS jsonb))
""")


async def serve_list(
    conn,
    customer_id: int,
    products: list[str],
    *,
    channel: str = "mobile",
    strategy: str = "personalised",
    tier_code: str | None = None,
    score: str = "0.5",
    propensity: str = "0.1",
    reasons: list | None = None,
    served_at: datetime | None = None,
) -> list:
    """A list served to the customer, one item per product, written as the service writes it (one recommendation_list
    row, its items in arrays: app/recommendations/served.py); returns the items' recommendation ids, by rank.
    `conn`: a session or a connection (the caller commits)."""
    list_id = new_list_id()
    await conn.execute(
        _SERVE_LIST,
        {
            "id": list_id,
            "customer_id": customer_id,
            "channel": channel,
            "strategy": strategy,
            "tier_code": tier_code,
            "served_at": served_at,
            "products": products,
            "scores": [Decimal(score)] * len(products),
            "propensities": [Decimal(propensity)] * len(products),
            "reasons": json.dumps([reasons or [] for _ in products]),
        },
    )
    return item_ids(list_id, len(products))
