"""What the quota check costs the hot read: the recommendation for a customer whose offer state holds (the
recommender's `recommend`, record=False, on pool connections), with the sold-out check in the statement (as
served) beside the same statement without it, taking turns for `--rounds` rounds in one run.

A scratch database (its name starts with quota_bench_, dropped at the end) gets the demo bank, its shipped quotas
(one of them sold out for the run) and every customer's offer state.

Usage: python -m bench.bench_quota_read [--customers 2000] [--rounds 4] [--seconds 5] [--concurrency 8]
"""

import argparse
import asyncio
import random
import time
import uuid
from dataclasses import replace

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker

from app.core.config import Settings
from app.core.db import create_engine, server_settings
from app.core.embedded import create_database, drop_database
from app.core.migrations import upgrade_to_head
from app.demo import generate_demo_bank
from app.recommendations import queries
from app.recommendations.recommender import Recommender
from bench.harness import plain_dsn, server_url

SETTINGS = Settings(environment="test")
_SOLD_OUT_CTE = queries.CANDIDATES[
    queries.CANDIDATES.index("), sold_out AS (") : queries.CANDIDATES.index("), products AS (")
]


def _without_quota_check() -> queries.Statement:
    """The reading statement as it was before quotas: no sold_out part, no sold_out filter."""
    candidates = (
        queries.CANDIDATES.replace(_SOLD_OUT_CTE, "")
        .replace("             WHEN p.code = ANY(so.codes) THEN 'sold_out'\n", "")
        .replace(" CROSS JOIN sold_out so", "")
    )
    assert "sold_out" not in candidates
    return queries.Statement().then(f"WITH requested_customer AS ({queries.offer_state.STATE_OF_CUSTOMER}){candidates}")


async def _prepare(url: str, customers: int) -> list[str]:
    engine = create_engine(url, SETTINGS, batch=True)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        await generate_demo_bank(session, customers, seed=7)
        await session.commit()
    async with sessions() as session:
        await session.execute(
            text(
                "UPDATE product_quota SET sold_count = cap_count, sold_out_until = 'infinity' "
                "WHERE product_code = 'credit_card_platinum'"
            )
        )
        await session.commit()
    recommender = Recommender(SETTINGS, sessions)
    print("offer states:", await recommender.refresh_offer_states(everyone=True))
    async with sessions() as session:
        ids = list((await session.scalars(text("SELECT external_id FROM customer ORDER BY id"))).all())
    await engine.dispose()
    return ids


async def _measure(dsn: str, url: str, ids: list[str], rounds: int, seconds: float, concurrency: int) -> None:
    engine = create_engine(url, SETTINGS, batch=True)
    recommender = Recommender(SETTINGS, async_sessionmaker(engine, expire_on_commit=False))
    served = await recommender._catalog()  # noqa: SLF001 (the bench swaps the reading statement)
    variants = {"with quota check": served, "without": replace(served, reading=_without_quota_check())}
    pool = await asyncpg.create_pool(
        dsn, min_size=concurrency, max_size=concurrency, server_settings=server_settings(SETTINGS)
    )
    rng = random.Random(3)
    totals = dict.fromkeys(variants, 0)

    async def worker(deadline: float) -> int:
        done = 0
        async with pool.acquire() as connection:
            while time.perf_counter() < deadline:
                await recommender.recommend(connection, rng.choice(ids), channel="mobile", limit=3, record=False)
                done += 1
        return done

    for round_ in range(rounds):
        for name, snapshot in variants.items():
            recommender._snapshot = snapshot  # noqa: SLF001
            deadline = time.perf_counter() + seconds
            done = sum(await asyncio.gather(*(worker(deadline) for _ in range(concurrency))))
            totals[name] += done
            print(f"round {round_ + 1} {name}: {done / seconds:,.0f} recommendations/s")
    with_check, without = totals["with quota check"], totals["without"]
    print(f"ratio with/without quota check: {with_check / without:.3f}")
    await pool.close()
    await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    url = create_database(server_url(), f"quota_bench_{uuid.uuid4().hex[:8]}")
    try:
        upgrade_to_head(url)
        ids = asyncio.run(_prepare(url, args.customers))
        asyncio.run(_measure(plain_dsn(url), url, ids, args.rounds, args.seconds, args.concurrency))
    finally:
        drop_database(url)


if __name__ == "__main__":
    main()
