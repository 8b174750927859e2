"""Intake throughput: NDJSON customer import and event batches through the API, each beside a raw COPY of
the same rows into the same table, in the same run. Usage: python -m bench.bench_intake [--customers N]

With --with-policies the four default policies are active: events and the import mark their customers and the
server's re-tiering worker (app/customers/retier.py) re-tiers them in micro-batches; the run samples the lag (the
age of the oldest mark) while it posts, and times how long after the last request the marks are all gone.

With --only-import --rounds K the first round runs as without it (its figures are the usual keys), then K - 1 more
on the same server, each from an empty customer table (cleared, untimed, before its import) with its COPY right after
its customers are re-tiered: the median of the K ratios says more than one 0.3 s import beside one 0.1 s COPY on a
busy machine."""

import argparse
import asyncio
import json
import random
import statistics
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import asyncpg
import httpx

from bench.harness import create_key, execute, scratch_database, serve


def customer_lines(count: int, seed: int = 1) -> list[dict]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        assessed = now - timedelta(days=rng.randint(0, 700))
        out.append(
            {
                "customer_id": f"B{i:08d}",
                "segment": "retail" if rng.random() < 0.92 else "small_business",
                "display_name": f"Customer {i}",
                "birth_date": f"{rng.randint(1940, 2006)}-0{rng.randint(1, 9)}-1{rng.randint(0, 9)}",
                "onboarded_at": (now - timedelta(days=rng.randint(1, 9000))).isoformat(),
                "risk_level": rng.randint(1, 5),
                "risk_assessed_at": assessed.isoformat(),
                "marketing_consent": rng.random() < 0.7,
            }
        )
    return out


def event_rows(customers: int, count: int, seed: int = 2) -> list[dict]:
    rng = random.Random(seed)
    now = datetime.now(UTC)
    out = []
    for i in range(count):
        when = (now - timedelta(minutes=rng.randint(1, 60 * 24 * 80))).isoformat()
        customer = f"B{rng.randrange(customers):08d}"
        if rng.random() < 0.75:
            out.append(
                {
                    "type": "transaction",
                    "event_id": f"e{i}",
                    "customer_id": customer,
                    "occurred_at": when,
                    "amount": f"{rng.uniform(1, 900):.2f}",
                    "direction": rng.choice(["debit", "credit"]),
                    "channel": rng.choice(["card", "mobile", "transfer"]),
                }
            )
        else:
            out.append(
                {
                    "type": "login",
                    "event_id": f"e{i}",
                    "customer_id": customer,
                    "occurred_at": when,
                    "channel": "mobile",
                }
            )
    return out


async def post_all(base: str, key: str, path: str, bodies: list, concurrency: int, content_type: str) -> float:
    queue = list(bodies)
    async with httpx.AsyncClient(
        base_url=base, headers={"X-API-Key": key, "Content-Type": content_type}, timeout=300
    ) as client:

        async def worker():
            while queue:
                body = queue.pop()
                response = await client.post(path, content=body)
                response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started


class LagSampler:
    """The re-tiering lag (age of the oldest mark) sampled on its own connection every `every` seconds."""

    def __init__(self, dsn: str, every: float = 0.5) -> None:
        self.dsn, self.every, self.worst, self.samples = dsn, every, 0.0, 0

    async def sample(self, conn) -> tuple[float, int]:
        lag, pending = await conn.fetchrow(
            "SELECT coalesce(extract(epoch FROM now() - least((SELECT min(marked_at) FROM retier_mark), "
            "(SELECT min(marked_at) FROM retier_mark_set))), 0)::float8, (SELECT count(*) FROM retier_mark) "
            "+ (SELECT coalesce(sum(cardinality(customer_ids)), 0) FROM retier_mark_set)"
        )
        self.worst = max(self.worst, lag)
        self.samples += 1
        return lag, pending

    async def during(self, work) -> float:
        """Run `work` (a coroutine returning seconds) while sampling; its result."""
        conn = await asyncpg.connect(self.dsn)
        task = asyncio.ensure_future(work)
        try:
            while not task.done():
                await self.sample(conn)
                await asyncio.wait({task}, timeout=self.every)
            return task.result()
        finally:
            await conn.close()

    async def drained(self, timeout: float = 3600) -> float:
        """Seconds until no mark is left (sampling the lag meanwhile)."""
        conn = await asyncpg.connect(self.dsn)
        try:
            started = time.perf_counter()
            while (await self.sample(conn))[1]:
                if time.perf_counter() - started > timeout:
                    raise TimeoutError("marks left after the timeout")
                await asyncio.sleep(self.every / 5)
            return time.perf_counter() - started
        finally:
            await conn.close()


async def copy_customers(dsn: str, lines: list[dict]) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("TRUNCATE customer, customer_external_id CASCADE")
        records = [
            (
                c["customer_id"],
                c["segment"],
                c["display_name"],
                datetime.strptime(c["birth_date"], "%Y-%m-%d").date(),
                datetime.fromisoformat(c["onboarded_at"]),
                c["risk_level"],
                datetime.fromisoformat(c["risk_assessed_at"]),
                c["marketing_consent"],
            )
            for c in lines
        ]
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "customer",
            records=records,
            columns=[
                "external_id",
                "segment",
                "display_name",
                "birth_date",
                "onboarded_at",
                "risk_level",
                "risk_assessed_at",
                "marketing_consent",
            ],
        )
        elapsed = time.perf_counter() - started
        await conn.execute(  # their external ids held unique, as every writer of customers does (not timed: the
            # COPY of the customer rows alone is the baseline)
            "INSERT INTO customer_external_id (external_id, customer_id) SELECT external_id, id FROM customer"
        )
        return elapsed
    finally:
        await conn.close()


async def copy_events(dsn: str, events: list[dict]) -> float:
    conn = await asyncpg.connect(dsn)
    try:
        ids = dict(await conn.fetch("SELECT external_id, id FROM customer"))
        await conn.execute("TRUNCATE customer_event, customer_activity_daily")
        records = [
            (
                ids[e["customer_id"]],
                e["event_id"],
                e["type"],
                datetime.fromisoformat(e["occurred_at"]),
                Decimal(e["amount"]) if "amount" in e else None,
                e.get("direction"),
                e.get("channel"),
            )
            for e in events
        ]
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "customer_event",
            records=records,
            columns=["customer_id", "event_id", "kind", "occurred_at", "amount", "direction", "channel"],
        )
        return time.perf_counter() - started
    finally:
        await conn.close()


async def clear_customers(dsn: str) -> None:
    """No customer left (and none marked): a later round of the import starts from the same empty table."""
    await execute(dsn, "TRUNCATE customer, customer_external_id, retier_mark, retier_mark_set CASCADE")


async def mark_all(dsn: str) -> None:
    """Every customer marked for re-tiering under every policy, as the NDJSON import marks those it writes."""
    await execute(dsn, "INSERT INTO retier_mark (customer_id, scope) SELECT id, 'any' FROM customer")


async def activate_default_policies(dsn: str) -> None:
    from app.core.config import Settings
    from app.core.db import create_engine, create_sessionmaker
    from app.core.embedded import to_async_url
    from app.tiering.policies import load_default_policies

    engine = create_engine(to_async_url(dsn), Settings(database_url=dsn))
    try:
        async with create_sessionmaker(engine)() as session:
            await load_default_policies(session, "bench")
            await session.commit()
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--import-chunk", type=int, default=20_000)
    parser.add_argument("--event-batch", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument(
        "--events-only",
        action="store_true",
        help="skip the customer import's API and COPY timings: the customers are copied in and (with policies) "
        "re-tiered by the server's worker before the events are posted, as after an import",
    )
    parser.add_argument(
        "--with-policies",
        action="store_true",
        help="activate the four default tier policies first: every write then re-tiers its customers",
    )
    parser.add_argument(
        "--only-import", action="store_true", help="the NDJSON import and its COPY only (no event intake)"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="with --only-import: the import (its customers re-tiered after it) and its COPY this many times, each "
        "round from an empty customer table; the figures of each round and their medians",
    )
    args = parser.parse_args()
    if args.events_only and args.only_import:
        parser.error("--events-only and --only-import exclude each other")
    if args.rounds > 1 and not args.only_import:
        parser.error("--rounds needs --only-import")

    customers = customer_lines(args.customers)
    events = event_rows(args.customers, args.events)
    ndjson = [
        "\n".join(json.dumps(c) for c in customers[i : i + args.import_chunk]).encode()
        for i in range(0, len(customers), args.import_chunk)
    ]
    batches = [
        json.dumps({"events": events[i : i + args.event_batch]}).encode()
        for i in range(0, len(events), args.event_batch)
    ]
    with scratch_database() as dsn:
        key = asyncio.run(create_key(dsn))
        if args.with_policies:
            asyncio.run(activate_default_policies(dsn))
        lag = LagSampler(dsn)
        if args.events_only:
            asyncio.run(copy_customers(dsn, customers))
            asyncio.run(mark_all(dsn))
        with serve(dsn) as base:
            if args.events_only:  # the copied customers re-tiered by the worker, as the import's are
                asyncio.run(lag.drained())
                lag.worst = 0.0
            else:
                api_import = asyncio.run(
                    lag.during(post_all(base, key, "/v1/customers/import", ndjson, 2, "application/x-ndjson"))
                )
                import_drain = asyncio.run(lag.drained())
                rounds = []  # (API seconds, drained after, COPY seconds) of each round after the first
                for _ in range(args.rounds - 1):
                    asyncio.run(clear_customers(dsn))
                    posted = lag.during(post_all(base, key, "/v1/customers/import", ndjson, 2, "application/x-ndjson"))
                    api_seconds = asyncio.run(posted)
                    drained = asyncio.run(lag.drained())
                    rounds.append((api_seconds, drained, asyncio.run(copy_customers(dsn, customers))))
            if not args.only_import:
                api_events = asyncio.run(
                    lag.during(post_all(base, key, "/v1/events", batches, args.concurrency, "application/json"))
                )
                events_drain = asyncio.run(lag.drained())
        if not args.only_import:
            raw_events = asyncio.run(copy_events(dsn, events))
        if not args.events_only:
            raw_import = asyncio.run(copy_customers(dsn, customers))
    n, e = args.customers, args.events
    print(
        f"customers={n} events={e} import_chunk={args.import_chunk} event_batch={args.event_batch} "
        f"concurrency={args.concurrency} with_policies={args.with_policies} events_only={args.events_only}"
    )
    if not args.events_only:
        print(f"import_api_customers_per_s={n / api_import:.0f}")
        print(f"import_copy_customers_per_s={n / raw_import:.0f}")
        print(f"import_ratio_api_to_copy={raw_import / api_import:.3f}")
    if args.only_import:
        print(f"import_marks_drained_after_s={import_drain:.1f} retier_lag_worst_s={lag.worst:.1f}")
        print(f"import_ratio_until_re_tiered={raw_import / (api_import + import_drain):.3f}")
        if args.rounds > 1:
            rounds = [(api_import, import_drain, raw_import), *rounds]
            ratios = [raw / api for api, _, raw in rounds]
            print("import_rounds_ratio_api_to_copy=" + ",".join(f"{r:.3f}" for r in ratios))
            print(f"import_rounds_median_ratio_api_to_copy={statistics.median(ratios):.3f}")
            print(f"import_rounds_median_api_customers_per_s={statistics.median(n / api for api, _, _ in rounds):.0f}")
            print(f"import_rounds_median_copy_customers_per_s={statistics.median(n / raw for _, _, raw in rounds):.0f}")
            print(f"import_rounds_worst_drained_after_s={max(drain for _, drain, _ in rounds):.1f}")
        return
    print(f"events_api_per_s={e / api_events:.0f}")
    print(f"events_copy_per_s={e / raw_events:.0f}")
    print(f"events_ratio_api_to_copy={raw_events / api_events:.3f}")
    if not args.events_only:
        print(f"import_marks_drained_after_s={import_drain:.1f}")
        print(f"import_ratio_until_re_tiered={raw_import / (api_import + import_drain):.3f}")
    print(f"events_marks_drained_after_s={events_drain:.1f}")
    print(f"retier_lag_worst_s={lag.worst:.1f} (sampled {lag.samples} times, every {lag.every} s)")
    print(f"events_ratio_until_re_tiered={raw_events / (api_events + events_drain):.3f}")


if __name__ == "__main__":
    main()
