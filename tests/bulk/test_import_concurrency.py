"""The same file sent twice at once, on real connections that commit: one import, every chunk merged once."""

import asyncio
import json
from datetime import date

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import create_sessionmaker
from app.core.migrations import upgrade_to_head
from app.customers import holdings_import
from app.demo import load_default_products
from app.tiering.policies import load_default_policies
from tests.factories import inserting_customers

CUSTOMERS = 60


async def test_the_same_file_twice_at_once_is_one_import_merged_once(scratch_database):
    url = scratch_database()
    upgrade_to_head(url)
    engine = create_async_engine(url, pool_size=6)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session:
            await load_default_products(session)
            await load_default_policies(session, "test")
            await session.execute(
                text(
                    inserting_customers(
                        "INSERT INTO customer (external_id, segment, onboarded_at) "
                        "SELECT 'Q' || i, 'retail', now() - interval '3 years' FROM generate_series(1, :n) i"
                    )
                ),
                {"n": CUSTOMERS},
            )
            await session.commit()
        feed = "".join(
            json.dumps(
                {
                    "customer_id": f"Q{i}",
                    "product_code": "savings_account",
                    "balance": f"{i * 1000}.00",
                    "as_of": date.today().isoformat(),
                }
            )
            + "\n"
            for i in range(1, CUSTOMERS + 1)
        ).encode()

        async def send() -> int:
            async def chunks():
                yield feed

            staged = await holdings_import.stage(sessionmaker, chunks(), "ndjson", "test")
            await holdings_import.merge(sessionmaker, staged.import_id, chunk_size=10)
            return staged.import_id

        first, second = await asyncio.gather(send(), send())
        assert first == second
        async with sessionmaker() as session:
            done = (await session.execute(text("SELECT status, customers, customers_done FROM holding_import"))).all()
            assert [tuple(row) for row in done] == [("succeeded", CUSTOMERS, CUSTOMERS)]
            assert await session.scalar(text("SELECT count(*) FROM holding")) == CUSTOMERS
            moves = await session.scalar(
                text("SELECT count(*) FROM tier_transition GROUP BY customer_id, policy_id ORDER BY 1 DESC LIMIT 1")
            )
            assert moves == 1  # one initial tier per customer and policy
            assert await session.scalar(text("SELECT count(*) FROM holding_import_line")) == 0
    finally:
        await engine.dispose()
