"""The demo bank: the default product catalog, and a synthetic population (app/demo_records.py) bulk-loaded with
COPY, so a million customers load in minutes.

Loading reserves ids from the customer sequence and COPYs each chunk through the session's own asyncpg connection,
inside the caller's transaction: the caller's commit (or rollback) covers it all.
"""

import asyncio
from datetime import date

import asyncpg
from sqlalchemy import func, null, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import driver_connection
from app.demo_records import COPY_COLUMNS, DemoRecords, customer_external_id, default_products, generate_demo_records
from app.engagement.demo import load_demo_engagement
from app.products import quotas
from app.products.models import Product
from app.rules import AttributeCatalog, check_condition, dump_condition, parse_condition

CHUNK_SIZE = 25_000  # customers per chunk (about 1M rows): two chunks in flight bound the process's memory
COPY_TIMEOUT_S = 600.0  # per COPY statement; the engine's 60 s command timeout is meant for requests


# ---------------------------------------------------------------------------------------------------------------
# The default catalog


async def load_default_products(session: AsyncSession) -> int:
    """Insert the default catalog, or bring existing products with the same codes back to it; flushes, never
    commits. Eligibility conditions are checked like the products API checks them (InvalidInput pointing at
    /<index>/eligibility/...). Returns the number of products written."""
    attributes = AttributeCatalog()  # built-ins: the shipped conditions use no custom attribute
    rows = default_products()
    for index, row in enumerate(rows):
        if row["eligibility"] is None:
            row["eligibility"] = null()  # SQL NULL, not a JSON null
        else:
            condition = parse_condition(row["eligibility"], f"/{index}/eligibility")
            check_condition(condition, attributes, f"/{index}/eligibility")
            row["eligibility"] = dump_condition(condition)
    statement = insert(Product).values(rows)
    replaced = {name: statement.excluded[name] for name in rows[0] if name != "code"}
    await session.execute(
        statement.on_conflict_do_update(index_elements=[Product.code], set_={**replaced, "updated_at": func.now()})
    )
    return len(rows)


# ---------------------------------------------------------------------------------------------------------------
# Loading


async def _driver_connection(session: AsyncSession) -> asyncpg.Connection:
    """The asyncpg connection under the session, for COPY. The session must already have run a statement, so that
    SQLAlchemy has begun its transaction there and the COPY is part of it."""
    driver: asyncpg.Connection = await driver_connection(session)
    if not driver.is_in_transaction():
        raise RuntimeError("the session's transaction has not begun on the driver connection")
    return driver


async def _next_customer_number(session: AsyncSession) -> int:
    """One past the highest demo-style external id (C00000123): a second run adds customers, never collides."""
    highest = await session.scalar(
        text("SELECT max(substr(external_id, 2)::bigint) FROM customer WHERE external_id ~ '^C[0-9]{1,15}$'")
    )
    return (highest or 0) + 1


async def _reserve_customer_ids(driver: asyncpg.Connection, count: int) -> list[int]:
    rows = await driver.fetch(
        "SELECT nextval(pg_get_serial_sequence('customer', 'id')) FROM generate_series(1, $1)", count
    )
    return [row[0] for row in rows]


async def _copy_records(driver: asyncpg.Connection, records: DemoRecords) -> None:
    """The chunk's rows, and its customers' external ids in customer_external_id (what holds them unique)."""
    for table, columns, rows in records.tables():
        if rows:
            await driver.copy_records_to_table(table, records=rows, columns=columns, timeout=COPY_TIMEOUT_S)
    external_ids = [(external_id, customer_id) for customer_id, external_id, *_ in records.customer]
    await driver.copy_records_to_table(
        "customer_external_id", records=external_ids, columns=("external_id", "customer_id"), timeout=COPY_TIMEOUT_S
    )


async def load_demo_benefits(session: AsyncSession) -> int:
    """The default benefit catalogue (app/defaults/benefits.json), attached to the default policies' tiers; run after
    the policies are loaded. Returns the number of benefits added."""
    from app.benefits.service import load_default_benefits

    return len(await load_default_benefits(session))


DEMO_USES = (
    "priority-line",
    "card-points-2x",
    "partner-dining",
    "airport-lounge",
    "card-points-3x",
    "deposit-rate-bonus",
    "dedicated-adviser",
)


async def record_demo_benefit_uses(session: AsyncSession, customers: int = 150) -> int:
    """Uses of the default benefits, so that the take-up report has something to show: each of the first
    `customers` customers (by id; run after the tier run) takes one benefit in force for them, trying DEMO_USES from
    a place that turns with the customer's number (the same bank, the same uses). Returns the uses recorded."""
    from app.benefits.uses import record_use
    from app.core.errors import Conflict
    from app.customers.models import Customer

    ids = (
        await session.scalars(
            select(Customer.external_id).where(Customer.erased_at.is_(None)).order_by(Customer.id).limit(customers)
        )
    ).all()
    recorded = 0
    for number, external_id in enumerate(ids):
        for turn in range(len(DEMO_USES)):
            try:
                await record_use(session, external_id, DEMO_USES[(number + turn) % len(DEMO_USES)], None)
            except Conflict:  # not in force for this customer, or used up: the next one
                continue
            recorded += 1
            break
    return recorded


async def generate_demo_bank(session: AsyncSession, customers: int, seed: int = 7) -> dict[str, int | str]:
    """Load the default products and `customers` synthetic customers with their holdings, balance history and
    activity, in the session's transaction (flushed, not committed). The same seed on an empty database on the same
    day gives the same bank; on a database that already has demo customers, numbering continues after the highest one.

    Chunks of CHUNK_SIZE customers are generated in a worker thread while the previous chunk is being copied.
    Returns the number of rows written per table.
    """
    if customers < 1:
        raise ValueError("customers must be at least 1")
    products = await load_default_products(session)
    product_quotas = await quotas.load_default_quotas(session)  # a monthly card quota, a wealth tranche
    categories = {row["code"]: row["category"] for row in default_products()}
    today: date = await session.scalar(select(func.current_date()))
    first_number = await _next_customer_number(session)
    driver = await _driver_connection(session)
    chunks = [(first_number + start, min(CHUNK_SIZE, customers - start)) for start in range(0, customers, CHUNK_SIZE)]

    async def start_chunk(number: int, count: int) -> asyncio.Task[DemoRecords]:
        ids = await _reserve_customer_ids(driver, count)
        return asyncio.create_task(
            asyncio.to_thread(generate_demo_records, seed, number, count, today, ids, categories)
        )

    totals = dict.fromkeys(COPY_COLUMNS, 0)
    pending: asyncio.Task[DemoRecords] | None = await start_chunk(*chunks[0])
    try:
        for position in range(len(chunks)):
            records = await pending
            pending = await start_chunk(*chunks[position + 1]) if position + 1 < len(chunks) else None
            await _copy_records(driver, records)
            for table, count in records.counts().items():
                totals[table] += count
    finally:
        if pending is not None:  # a failed COPY: let the generating thread finish, and drop its result
            await asyncio.wait([pending])
            if not pending.cancelled():
                pending.exception()
    for table in (*COPY_COLUMNS, "customer_external_id"):  # fresh statistics: the first tier run plans well
        await session.execute(text(f"ANALYZE {table}"))
    engagement = await load_demo_engagement(session, seed)  # communities, activities, referrals (app/engagement)
    return {
        "products": products,
        "product_quotas": product_quotas,
        "customers": totals["customer"],
        "holdings": totals["holding"],
        "holding_balances": totals["holding_balance"],
        "aum_days": totals["customer_aum_daily"],
        "activity_days": totals["customer_activity_daily"],
        "events": totals["customer_event"],
        "first_external_id": customer_external_id(first_number),
        "last_external_id": customer_external_id(first_number + customers - 1),
        "community_memberships": engagement["community_membership"],
        "activity_participations": engagement["activity_participation"],
        "referrals": engagement["referral"],
    }
