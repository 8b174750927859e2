"""Feedback intake throughput: POST /v1/feedback/events under concurrent clients on loopback, beside a raw COPY of
the same rows into feedback_event, in the same run. Usage: python -m bench.bench_feedback [--events N]"""

import argparse
import asyncio
import json
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg

from app.core.config import Settings
from app.core.embedded import to_async_url
from app.recommendations.served import item_ids, new_list_id
from bench.bench_intake import post_all
from bench.harness import create_key, scratch_database, serve

KINDS = (("impression", 0.70), ("click", 0.15), ("dismiss", 0.07), ("accept", 0.05), ("convert", 0.03))
TIERS = ("mass", "gold", "wealth", "private")


async def load_catalog_and_policies(dsn: str) -> list[str]:
    """The default product catalog and tier policies (conversions then re-evaluate real tiers)."""
    from app.core.db import create_engine, create_sessionmaker
    from app.demo import load_default_products
    from app.tiering.policies import load_default_policies

    engine = create_engine(to_async_url(dsn), Settings(database_url=dsn))
    try:
        async with create_sessionmaker(engine)() as session:
            await load_default_products(session)
            await load_default_policies(session)
            await session.commit()
    finally:
        await engine.dispose()
    conn = await asyncpg.connect(dsn)
    try:
        return [r["code"] for r in await conn.fetch("SELECT code FROM product WHERE NOT is_service ORDER BY code")]
    finally:
        await conn.close()


async def seed_items(
    dsn: str, customers: int, items_per_customer: int, products: list[str], seed: int = 5, offer_states: bool = False
) -> list[tuple[str, uuid.UUID]]:
    """Customers, one served list each and its items, with COPY; returns (external id, recommendation id). With
    `offer_states`, each customer also has an offer state, as a customer served a list through the API has: what
    a feedback event's statement then also touches (the stored contact outcome it ends)."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    conn = await asyncpg.connect(dsn)
    try:
        await conn.copy_records_to_table(
            "customer",
            columns=["external_id", "segment", "onboarded_at"],
            records=[(f"FB{i:08d}", "retail", now - timedelta(days=rng.randint(30, 5000))) for i in range(customers)],
        )
        ids = dict(  # their external ids held unique, as every writer of customers does
            await conn.fetch(
                "INSERT INTO customer_external_id (external_id, customer_id) SELECT external_id, id FROM customer "
                "RETURNING external_id, customer_id"
            )
        )
        external = {v: k for k, v in ids.items()}
        lists, out = [], []
        for i in range(customers):  # one row a list, its items in arrays (app/recommendations/served.py)
            customer_id, list_id = ids[f"FB{i:08d}"], new_list_id()
            codes = rng.sample(products, items_per_customer)
            lists.append(
                (
                    list_id,
                    customer_id,
                    "mobile",
                    "personalised" if rng.random() < 0.9 else "holdout_popularity",
                    rng.choice(TIERS),
                    codes,
                    [Decimal("0.5")] * len(codes),
                    [Decimal("0.1")] * len(codes),
                    json.dumps([[] for _ in codes]),
                )
            )
            out.extend((external[customer_id], rid) for rid in item_ids(list_id, len(codes)))
        await conn.copy_records_to_table(
            "recommendation_list",
            columns=[
                "id",
                "customer_id",
                "channel",
                "strategy",
                "tier_code",
                "product_codes",
                "scores",
                "propensities",
                "reasons",
            ],
            records=lists,
        )
        if offer_states:
            await conn.execute(
                "INSERT INTO customer_offer_state (customer_id, generation, valid_until) "
                "SELECT id, 1, now() + interval '1 day' FROM customer"
            )
        return out
    finally:
        await conn.close()


def feedback_events(items: list[tuple[str, uuid.UUID]], count: int, seed: int = 6) -> list[dict]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    kinds, weights = zip(*KINDS, strict=True)
    out = []
    for i in range(count):
        customer, rid = rng.choice(items)
        out.append(
            {
                "event_id": f"fb{i}",
                "recommendation_id": str(rid),
                "customer_id": customer,
                "type": rng.choices(kinds, weights)[0],
                "occurred_at": (now - timedelta(minutes=rng.randint(1, 60 * 24 * 30))).isoformat(),
            }
        )
    return out


async def copy_feedback(dsn: str, events: list[dict]) -> float:
    """The same rows written raw into feedback_event (emptied first): no checks, no statistics, no holdings."""
    conn = await asyncpg.connect(dsn)
    try:
        items = {
            r["recommendation_id"]: r
            for r in await conn.fetch(
                "SELECT ri.recommendation_id, ri.customer_id, ri.product_code, ri.tier_code, ri.strategy, l.channel "
                "FROM recommendation_item ri JOIN recommendation_list l ON l.customer_id = ri.customer_id "
                "AND l.id = ri.list_id"
            )
        }
        await conn.execute("TRUNCATE feedback_event")
        records = []
        for e in events:
            item = items[uuid.UUID(e["recommendation_id"])]
            records.append(
                (
                    item["customer_id"],
                    e["event_id"],
                    item["recommendation_id"],
                    item["product_code"],
                    item["tier_code"],
                    item["channel"],
                    item["strategy"],
                    e["type"],
                    datetime.fromisoformat(e["occurred_at"]),
                )
            )
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "feedback_event",
            records=records,
            columns=[
                "customer_id",
                "event_id",
                "recommendation_id",
                "product_code",
                "tier_code",
                "channel",
                "strategy",
                "kind",
                "occurred_at",
            ],
        )
        return time.perf_counter() - started
    finally:
        await conn.close()


async def check_counts(dsn: str) -> tuple[int, int, int]:
    conn = await asyncpg.connect(dsn)
    try:
        stored = await conn.fetchval("SELECT count(*) FROM feedback_event")
        counted = await conn.fetchval(
            "SELECT sum(impressions + clicks + accepts + dismisses + converts)::bigint FROM propensity_stat"
        )
        shards = await conn.fetchval("SELECT count(DISTINCT shard) FROM propensity_stat")
        return stored, counted, shards
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=50_000)
    parser.add_argument("--items-per-customer", type=int, default=3)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--offer-states", action="store_true", help="give every customer an offer state")
    args = parser.parse_args()

    with scratch_database() as dsn:
        products = asyncio.run(load_catalog_and_policies(dsn))
        items = asyncio.run(
            seed_items(dsn, args.customers, args.items_per_customer, products, offer_states=args.offer_states)
        )
        events = feedback_events(items, args.events)
        batches = [
            json.dumps({"events": events[i : i + args.batch]}).encode() for i in range(0, len(events), args.batch)
        ]
        key = asyncio.run(create_key(dsn, "app"))
        with serve(dsn) as base:
            api_seconds = asyncio.run(
                post_all(base, key, "/v1/feedback/events", batches, args.concurrency, "application/json")
            )
            retry_seconds = asyncio.run(
                post_all(base, key, "/v1/feedback/events", batches[:20], args.concurrency, "application/json")
            )
        stored, counted, shards = asyncio.run(check_counts(dsn))
        copy_seconds = asyncio.run(copy_feedback(dsn, events))
    n = args.events
    print(f"customers={args.customers} items={len(items)} events={n} batch={args.batch} concurrency={args.concurrency}")
    print(f"feedback_api_events_per_s={n / api_seconds:.0f}")
    print(f"feedback_copy_events_per_s={n / copy_seconds:.0f}")
    print(f"feedback_ratio_api_to_copy={copy_seconds / api_seconds:.3f}")
    print(f"feedback_retry_events_per_s={min(n, 20 * args.batch) / retry_seconds:.0f}")
    print(f"stored={stored} counted_in_propensity_stat={counted} shards_used={shards}")


if __name__ == "__main__":
    main()
