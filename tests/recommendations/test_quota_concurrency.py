"""Quotas under real concurrency: conversions on separate connections that really commit never count beyond the
cap, and the same conversion racing itself counts once."""

import asyncio
import uuid
from datetime import date
from decimal import Decimal

from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.customers import flows
from app.customers.schemas import HoldingIn
from app.products import quotas
from tests.factories import delete_customers, inserting_customers


async def _setup(engine, tag: str, customers: int) -> tuple[str, list[str], list[int]]:
    product = f"quota_{tag}"
    externals = [f"QC{tag}{n}" for n in range(customers)]
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO product (code, name, category, risk_level, channels) "
                "VALUES (:p, 'Quota fund', 'fund', 3, '{mobile}')"
            ),
            {"p": product},
        )
        ids = [
            await conn.scalar(
                text(
                    inserting_customers(
                        "INSERT INTO customer (external_id, segment, onboarded_at) VALUES (:e, 'retail', now())"
                    )
                ),
                {"e": external},
            )
            for external in externals
        ]
    return product, externals, ids


async def _cleanup(engine, product: str, ids: list[int]) -> None:
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM webhook_event WHERE payload->>'product_code' = :p"), {"p": product})
        await delete_customers(conn, "id = ANY(:ids)", {"ids": ids})
        await conn.execute(text("DELETE FROM product_quota WHERE product_code = :p"), {"p": product})
        await conn.execute(text("DELETE FROM product WHERE code = :p"), {"p": product})


async def test_concurrent_new_holdings_never_count_beyond_the_cap(engine):
    cap, racers = 3, 8
    product, externals, ids = await _setup(engine, uuid.uuid4().hex[:8], racers)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with sessions() as own:
            await quotas.put_quota(own, product, period="month", cap_count=cap, cap_amount=None)
            await own.commit()

        async def buy(external_id: str) -> None:
            async with sessions() as own:
                holding = HoldingIn(product_code=product, balance=Decimal("100.00"), as_of=date.today())
                await flows.replace_holdings(own, external_id, [holding])
                await own.commit()

        await asyncio.gather(*(buy(external) for external in externals))
        async with engine.connect() as conn:
            quota = (
                await conn.execute(
                    text("SELECT sold_count, sold_amount, over_cap_count FROM product_quota WHERE product_code = :p"),
                    {"p": product},
                )
            ).one()
            ledger = (
                await conn.execute(
                    text("SELECT counted, count(*) FROM product_quota_conversion WHERE product_code = :p GROUP BY 1"),
                    {"p": product},
                )
            ).all()
            held = await conn.scalar(text("SELECT count(*) FROM holding WHERE product_code = :p"), {"p": product})
            sold_out = await conn.scalar(
                text(
                    "SELECT count(*) FROM webhook_event WHERE event_type = 'product.sold_out' "
                    "AND payload->>'product_code' = :p"
                ),
                {"p": product},
            )
        assert tuple(quota) == (cap, Decimal("300.00"), racers - cap)
        assert dict(ledger) == {True: cap, False: racers - cap}
        assert held == racers  # every conversion is recorded; the quota just reads sold out
        assert sold_out == 1
    finally:
        await _cleanup(engine, product, ids)


async def test_the_same_conversion_racing_itself_counts_once(engine):
    product, _, ids = await _setup(engine, uuid.uuid4().hex[:8], 1)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with sessions() as own:
            await quotas.put_quota(own, product, period="lifetime", cap_count=5, cap_amount=None)
            await own.commit()

        async def report() -> int:
            async with sessions() as own:
                counted = await quotas.record_conversions(own, [quotas.Conversion(product, ids[0], "convert")])
                await own.commit()
                return counted

        assert sorted(await asyncio.gather(report(), report(), report(), report())) == [0, 0, 0, 1]
        async with engine.connect() as conn:
            assert (
                await conn.scalar(text("SELECT sold_count FROM product_quota WHERE product_code = :p"), {"p": product})
                == 1
            )
    finally:
        await _cleanup(engine, product, ids)
