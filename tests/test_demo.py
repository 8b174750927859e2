"""The demo bank: a pure, reproducible generator, the default catalog, and a COPY load the features view reads."""

import hashlib
import json
from collections import Counter
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import func, select, text, update

from app.customers.models import (
    Customer,
    CustomerActivityDaily,
    CustomerAumDaily,
    CustomerEvent,
    Holding,
    HoldingBalance,
)
from app.customers.service import AUM_CATEGORIES
from app.demo import generate_demo_bank, load_default_products
from app.demo_records import (
    COPY_COLUMNS,
    DEFAULT_PRODUCTS_FILE,
    default_products,
    draw_demo_profile,
    generate_demo_records,
)
from app.products.models import Product
from app.products.schemas import ProductCreate
from app.rules import AttributeCatalog, check_condition, parse_condition

TODAY = date(2026, 11, 23)
CATALOG = {row["code"]: row for row in default_products()}
CATEGORIES = {code: row["category"] for code, row in CATALOG.items()}


def digest(records) -> str:
    return hashlib.sha256(repr([rows for _, _, rows in records.tables()]).encode()).hexdigest()


def test_same_seed_gives_the_same_records_and_another_seed_does_not():
    first = generate_demo_records(1, 1, 300, TODAY)
    assert digest(first) == digest(generate_demo_records(1, 1, 300, TODAY))
    assert digest(first) != digest(generate_demo_records(2, 1, 300, TODAY))


def test_records_do_not_depend_on_chunking():
    whole = generate_demo_records(1, 1, 300, TODAY)
    head, tail = generate_demo_records(1, 1, 120, TODAY), generate_demo_records(1, 121, 180, TODAY)
    for (table, _, rows), (_, _, head_rows), (_, _, tail_rows) in zip(
        whole.tables(), head.tables(), tail.tables(), strict=True
    ):
        assert rows == head_rows + tail_rows, table


def test_wealth_is_heavy_tailed_with_customers_in_every_band():
    profiles = [draw_demo_profile(1, number) for number in range(1, 20_001)]
    bands = Counter(0 if p.aum < 50_000 else 1 if p.aum < 500_000 else 2 if p.aum < 10_000_000 else 3 for p in profiles)
    share = {band: count / len(profiles) for band, count in bands.items()}
    assert 0.70 < share[0] < 0.80
    assert 0.16 < share[1] < 0.24
    assert 0.03 < share[2] < 0.07
    assert 0 < share[3] < 0.01
    small_business = sum(p.segment == "small_business" for p in profiles) / len(profiles)
    assert 0.06 < small_business < 0.10
    assert 0.07 < sum(p.risk_level is None for p in profiles) / len(profiles) < 0.13


def test_generated_holdings_are_consistent_with_customer_and_catalog():
    records = generate_demo_records(3, 1, 2000, TODAY)
    customers = {row[0]: row for row in records.customer}
    held: dict[int, list[tuple]] = {}
    for row in records.holding:
        held.setdefault(row[0], []).append(row)
    today_aum = {row[0]: row[2] for row in records.customer_aum_daily if row[1] == TODAY}
    for customer_id, (_, _, segment, _, _, onboarded_at, risk_level, *_rest) in customers.items():
        holdings = held[customer_id]
        codes = {row[1] for row in holdings}
        assert 1 <= len(holdings) <= 8 and "current_account" in codes
        assert codes <= CATALOG.keys()
        assert ("business_account" in codes) == (segment == "small_business")
        if segment == "retail":
            assert not codes & {"business_account", "sme_credit_line"}
        for code in codes:
            if CATEGORIES[code] in ("fund", "wealth"):  # suitability: never above the customer's risk level
                assert risk_level is not None and CATALOG[code]["risk_level"] <= risk_level
        assert all(row[2] >= onboarded_at.date() for row in holdings)
        assert today_aum[customer_id] == sum(row[3] for row in holdings if CATEGORIES[row[1]] in AUM_CATEGORIES)
    assert Counter(row[2] for row in records.customer)["small_business"] > 0


def test_raw_events_add_up_to_the_daily_rollups_and_the_last_transaction():
    records = generate_demo_records(4, 1, 2000, TODAY)
    rollups = {(row[0], row[1]): row[2:] for row in records.customer_activity_daily}
    last_txn_at = {row[0]: row[9] for row in records.customer}
    days: dict[tuple, list] = {}
    latest: dict[int, object] = {}
    for customer_id, _, kind, occurred_at, amount, _, _ in records.customer_event:
        totals = days.setdefault((customer_id, occurred_at.date()), [0, Decimal(0), 0, 0])
        if kind == "transaction":
            totals[0] += 1
            totals[1] += amount
            latest[customer_id] = max(latest.get(customer_id, occurred_at), occurred_at)
        elif kind == "login":
            totals[2] += 1
        else:
            totals[3] += 1
    assert days and all(rollups[key] == tuple(totals) for key, totals in days.items())
    assert latest and all(last_txn_at[customer_id] == moment for customer_id, moment in latest.items())
    assert len({(row[0], row[1]) for row in records.customer_event}) == len(records.customer_event)


def test_default_catalog_passes_the_product_api_validation():
    items = json.loads(DEFAULT_PRODUCTS_FILE.read_text())
    for item in items:
        ProductCreate.model_validate(item)
        if item["eligibility"] is not None:
            check_condition(parse_condition(item["eligibility"]), AttributeCatalog())
    assert len({item["product_code"] for item in items}) == len(items) >= 20
    assert {item["category"] for item in items} == {"deposit", "wealth", "fund", "insurance", "loan", "card"}
    generated = {row[1] for row in generate_demo_records(1, 1, 2000, TODAY).holding}
    assert generated == {item["product_code"] for item in items}  # the demo bank holds every product, and only those


async def test_default_products_are_upserted_by_code(session):
    assert await load_default_products(session) == len(CATALOG)
    await session.execute(update(Product).where(Product.code == "mortgage").values(name="Renamed", lever=3))
    assert await load_default_products(session) == len(CATALOG)
    products = {p.code: p for p in await session.scalars(select(Product))}
    assert products.keys() == CATALOG.keys()
    assert (products["mortgage"].name, products["mortgage"].lever) == (CATALOG["mortgage"]["name"], Decimal(1))
    assert await session.scalar(select(func.count()).select_from(Product).where(Product.eligibility.is_(None))) == sum(
        row["eligibility"] is None for row in CATALOG.values()
    )
    assert products["credit_card_platinum"].eligibility == {
        "all": [{"attr": "aum_avg_3m", "op": "gte", "value": 100000}]
    }


async def test_demo_bank_writes_what_the_generator_generates(session):
    result = await generate_demo_bank(session, customers=300, seed=1)
    models = {
        "customer": Customer,
        "holding": Holding,
        "holding_balance": HoldingBalance,
        "customer_aum_daily": CustomerAumDaily,
        "customer_activity_daily": CustomerActivityDaily,
        "customer_event": CustomerEvent,
    }
    stored = {table: await session.scalar(select(func.count()).select_from(model)) for table, model in models.items()}
    assert stored == {
        "customer": result["customers"],
        "holding": result["holdings"],
        "holding_balance": result["holding_balances"],
        "customer_aum_daily": result["aum_days"],
        "customer_activity_daily": result["activity_days"],
        "customer_event": result["events"],
    }
    assert result["customers"] == 300 and result["events"] > 0
    assert (result["first_external_id"], result["last_external_id"]) == ("C00000001", "C00000300")

    today = await session.scalar(select(func.current_date()))
    ids = list(await session.scalars(select(Customer.id).order_by(Customer.external_id)))
    expected = generate_demo_records(1, 1, 300, today, ids)
    columns = [getattr(Customer, name) for name in COPY_COLUMNS["customer"]]
    rows = [tuple(row) for row in await session.execute(select(*columns).order_by(Customer.external_id))]
    assert rows == expected.customer
    assert stored == expected.counts()


async def test_second_demo_run_adds_customers_after_the_first(session):
    await generate_demo_bank(session, customers=40, seed=5)
    second = await generate_demo_bank(session, customers=25, seed=5)
    assert (second["first_external_id"], second["last_external_id"]) == ("C00000041", "C00000065")
    assert await session.scalar(select(func.count()).select_from(Customer)) == 65


async def test_features_view_reads_sane_metrics_from_the_demo_bank(session):
    await generate_demo_bank(session, customers=300, seed=1)
    features = (
        (
            await session.execute(
                text(
                    "SELECT f.*, d.aum AS aum_today FROM customer_features f "
                    "LEFT JOIN customer_aum_daily d ON d.customer_id = f.customer_id AND d.day = current_date"
                )
            )
        )
        .mappings()
        .all()
    )
    assert len(features) == 300
    catalog = set(await session.scalars(select(Product.code)))
    assert all(f["products_held_count"] >= 1 and set(f["held_products"]) <= catalog for f in features)
    assert all("current_account" in f["held_products"] for f in features)
    assert all(f["aum"] == f["aum_today"] for f in features)
    assert sum(f["aum_avg_3m"] > 0 for f in features) >= 0.9 * len(features)
    assert all(-1 <= f["aum_trend_3m"] < 5 for f in features if f["aum_trend_3m"] is not None)

    dormant = [f for f in features if f["txn_count_90d"] == 0]
    assert 0 < len(dormant) < 0.3 * len(features)
    assert all(f["days_since_last_txn"] is None or f["days_since_last_txn"] >= 90 for f in dormant)
    active = [f for f in features if f["txn_count_90d"] > 0]
    assert all(1 <= f["days_since_last_txn"] <= 89 and f["txn_amount_90d"] > 0 for f in active)
    assert any(f["logins_30d"] > 0 for f in features) and any(f["referrals_12m"] > 0 for f in features)

    business = [f for f in features if f["segment"] == "small_business"]
    assert business and all("business_account" in f["held_products"] for f in business)
    assert all("business_account" not in f["held_products"] for f in features if f["segment"] == "retail")
    assert all(18 <= f["age"] <= 90 and 0 <= f["tenure_months"] <= 300 for f in features)
    # some risk profiles have expired: a level without a valid tolerance
    assert any(f["risk_level"] is not None and f["risk_tolerance"] is None for f in features)
    assert sum(f["marketing_consent"] for f in features) / len(features) > 0.55


def test_twelve_month_ends_of_holdings_with_products_added_dropped_and_paused():
    from app.demo_records import DROPPABLE, HISTORY_MONTHS

    records = generate_demo_records(5, 1, 3000, TODAY)
    held_today = {(row[0], row[1]) for row in records.holding}
    months: dict[tuple[int, str], set] = {}
    for customer_id, code, day, _ in records.holding_balance:
        months.setdefault((customer_id, code), set()).add(day)
    month_ends = sorted({day for days in months.values() for day in days} - {TODAY})
    assert len(month_ends) == HISTORY_MONTHS and all((d + timedelta(days=1)).day == 1 for d in month_ends)
    dropped = {key for key in months if key not in held_today}
    assert dropped and {code for _, code in dropped} <= set(DROPPABLE)
    assert all(max(months[key]) < month_ends[-1] for key in dropped)  # not held at last month's end either
    added = [key for key in held_today if min(months[key]) > month_ends[0]]
    paused = [
        key
        for key in held_today
        if len(months[key]) >= 3
        and any(day not in months[key] for day in month_ends if min(months[key]) < day < max(months[key]))
    ]
    assert len(added) > 100 and len(paused) > 20
