"""A holdings import's chunk under the four default policies gives the same holdings, tiers, facts and transitions
as per-customer PUT .../holdings (app.customers.flows.replace_holdings), over two nights that move tiers."""

import json
from datetime import date, timedelta
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import create_sessionmaker
from app.core.migrations import upgrade_to_head
from app.customers import flows, holdings_import, service
from app.customers.schemas import HoldingIn
from app.demo import load_default_products
from app.tiering.policies import load_default_policies
from tests.factories import inserting_customers, state_of

CUSTOMERS = 150  # more than app.tiering.assignment.refresh.dense_range's 100: the chunk is evaluated as a range
TODAY = date.today()
EARLIER = TODAY - timedelta(days=40)
PRODUCTS = ["current_account", "savings_account", "balanced_fund", "mortgage", "life_insurance", "term_deposit_12m"]


def night(i: int, second: bool) -> list[tuple[str, Decimal, date]]:
    """Customer i's holdings: one to three products, balances spread across the wealth tiers' thresholds; on the
    second night a third of them grow tenfold, a third shrink tenfold, some products close and others open."""
    count = 1 + (i + second) % 3
    factor = Decimal(10) ** ((i % 3) - 1) if second else Decimal(1)
    balance = Decimal(37) * (i**3) % Decimal(2_000_000) + Decimal("10.50")
    return [
        (
            PRODUCTS[(i + k + (2 if second and i % 5 == 0 else 0)) % len(PRODUCTS)],
            (balance * factor / (k + 1)).quantize(Decimal("0.01")),
            day,
        )
        for k in range(count)
        for day in [TODAY if second else EARLIER]
    ]


async def test_a_chunk_under_four_policies_gives_what_puts_give(scratch_database):
    url = scratch_database()
    upgrade_to_head(url)
    engine = create_async_engine(url, pool_size=4)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session:
            await load_default_products(session)
            await load_default_policies(session, "test")
            for prefix in ("P", "B"):  # P1..P150, then B1..B150: the B customers' ids are dense
                await session.execute(
                    text(
                        inserting_customers(
                            "INSERT INTO customer (external_id, segment, onboarded_at) SELECT :prefix || i, "
                            "CASE WHEN i % 7 = 0 THEN 'small_business' ELSE 'retail' END, "
                            "now() - make_interval(days => 30 * (i % 60)) FROM generate_series(1, :n) i ORDER BY i"
                        )
                    ),
                    {"prefix": prefix, "n": CUSTOMERS},
                )
            await session.commit()
        for second in (False, True):
            for i in range(1, CUSTOMERS + 1):
                async with sessionmaker() as session:
                    holdings = [HoldingIn(product_code=c, balance=b, as_of=d) for c, b, d in night(i, second)]
                    await flows.replace_holdings(session, f"P{i}", holdings)
                    await session.commit()
            feed = "".join(
                json.dumps({"customer_id": f"B{i}", "product_code": c, "balance": str(b), "as_of": str(d)}) + "\n"
                for i in range(1, CUSTOMERS + 1)
                for c, b, d in night(i, second)
            ).encode()

            async def chunks(body=feed):
                yield body

            staged = await holdings_import.stage(sessionmaker, chunks(), "ndjson", "test")
            await holdings_import.merge(sessionmaker, staged.import_id)
            async with sessionmaker() as session:
                record, _ = await holdings_import.get_import(session, staged.import_id)
                assert (record.status, record.rejected, record.customers_done) == ("succeeded", 0, CUSTOMERS)
        async with sessionmaker() as session:
            by_put, by_import = await state_of(session, "P"), await state_of(session, "B")
            directions = (await session.execute(text("SELECT DISTINCT direction FROM tier_transition"))).scalars()
        assert len(by_import) == CUSTOMERS and by_import == by_put
        assert set(directions) >= {"initial", "upgrade"}
        moved = {t for customer in by_put.values() for t in customer["transitions"] if "initial" not in t}
        assert len({t.split(",")[0] for t in moved}) >= 2  # the second night moved tiers under several policies
        async with sessionmaker() as session:  # a dense range's statements run without nested loops, and only they
            ids = list(await session.scalars(text("SELECT id FROM customer WHERE external_id LIKE 'B%' ORDER BY id")))
            await flows.customers_changed(session, ids, service.HOLDING_METRICS)
            assert await session.scalar(text("SELECT current_setting('enable_nestloop')")) == "on"
            await session.rollback()
    finally:
        await engine.dispose()
