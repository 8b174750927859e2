"""The nightly balances feed: `tierwise import-balances FILE` (the same code path as POST /v1/holdings/import) for
one balance row per customer, with the four default policies active, end to end (staged with COPY, merged in
chunks, every customer re-tiered under the four policies, offer states marked stale), beside a raw COPY of the same
rows into holdings, balance history and AUM snapshots plus one hand-written tiering statement per policy, in the
same run and the same database. Usage: python -m bench.bench_import [--customers N] [--chunk-size N]"""

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import asyncpg

from app.core.embedded import create_database, drop_database, to_async_url
from app.core.migrations import upgrade_to_head
from bench.harness import plain_dsn, server_url

PRODUCTS = [  # (code, category, weight): one holding per customer, drawn from the default catalog
    ("current_account", "deposit", 30),
    ("savings_account", "deposit", 25),
    ("term_deposit_12m", "deposit", 10),
    ("balanced_fund", "fund", 10),
    ("equity_fund", "fund", 5),
    ("private_banking_portfolio", "wealth", 3),
    ("life_insurance", "insurance", 7),
    ("mortgage", "loan", 10),
]
AUM_CATEGORIES = {"deposit", "wealth", "fund", "insurance"}

# The four default policies (app/defaults/policies.json) written by hand: the same conditions over the same view.
HAND_WRITTEN = {
    "wealth": """CASE WHEN aum_avg_3m >= 10000000 THEN 'private' WHEN aum_avg_3m >= 500000 THEN 'wealth'
                      WHEN aum_avg_3m >= 50000 THEN 'gold' ELSE 'mass' END""",
    "lifecycle": """CASE WHEN tenure_months < 6 THEN 'new'
                         WHEN days_since_last_txn > 90 OR (days_since_last_txn IS NULL AND txn_count_90d = 0)
                              THEN 'dormant'
                         WHEN aum_trend_3m <= -0.2 OR logins_30d = 0 THEN 'declining' ELSE 'active' END""",
    "loyalty": """CASE WHEN tenure_months >= 36 AND products_held_count >= 4 AND txn_count_90d >= 10
                            AND open_complaints = 0
                            AND (is_promoter OR (nps_latest IS NULL AND referrals_12m >= 1)) THEN 'iron_fan'
                       WHEN tenure_months >= 12 AND products_held_count >= 2 THEN 'core' ELSE 'casual' END""",
    "needs": """CASE WHEN investment_balance > 0 OR 'fund' = ANY(held_categories) THEN 'investor'
                     WHEN loan_balance > 0 THEN 'borrower' WHEN segment = 'small_business' THEN 'small_business'
                     WHEN deposit_balance >= 10000 THEN 'saver' ELSE 'everyday' END""",
}


def balance_rows(customers: int, seed: int = 3) -> list[tuple]:
    """(customer id, external id, product, category, balance, as_of): one row per customer."""
    rng = random.Random(seed)
    codes, weights = [p[:2] for p in PRODUCTS], [p[2] for p in PRODUCTS]
    today = date.today()
    out = []
    for i in range(1, customers + 1):
        code, category = rng.choices(codes, weights)[0]
        balance = Decimal(f"{10 ** rng.uniform(2, 7.4):.2f}")
        out.append((i, f"N{i:08d}", code, category, balance, today))
    return out


async def build(dsn: str, customers: int) -> None:
    """Customers 1..N by COPY, the default catalog and the four default policies, active."""
    conn = await asyncpg.connect(dsn)
    try:
        rng = random.Random(4)
        now = datetime.now(UTC)
        records = [
            (
                i,
                f"N{i:08d}",
                "retail" if rng.random() < 0.92 else "small_business",
                now - timedelta(days=rng.randint(1, 9000)),
                rng.randint(1, 5),
                now - timedelta(days=rng.randint(0, 300)),
            )
            for i in range(1, customers + 1)
        ]
        await conn.copy_records_to_table(
            "customer",
            records=records,
            columns=["id", "external_id", "segment", "onboarded_at", "risk_level", "risk_assessed_at"],
        )
        await conn.execute("SELECT setval(pg_get_serial_sequence('customer', 'id'), $1)", customers)
        await conn.execute(  # their external ids held unique, as every writer of customers does
            "INSERT INTO customer_external_id (external_id, customer_id) SELECT external_id, id FROM customer"
        )
    finally:
        await conn.close()
    from app.core.config import Settings
    from app.core.db import create_engine, create_sessionmaker
    from app.demo import load_default_products
    from app.tiering.policies import load_default_policies

    engine = create_engine(to_async_url(dsn), Settings(database_url=dsn), batch=True)
    try:
        async with create_sessionmaker(engine)() as session:
            await load_default_products(session)
            await load_default_policies(session, "bench")
            await session.commit()
    finally:
        await engine.dispose()


async def settle(dsn: str) -> None:
    """Vacuum and analyse what the set-up wrote and take a checkpoint, so that no timed phase pays for them."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
        await conn.execute("CHECKPOINT")
    finally:
        await conn.close()


async def service_import(dsn: str, path: Path, chunk_size: int, workers: int) -> tuple[float, float, dict]:
    """What `tierwise import-balances FILE` runs (app.cli._import_balances), its two phases timed: (stage s,
    merge s, the import)."""
    from app.core.config import Settings
    from app.core.db import create_engine, create_sessionmaker
    from app.customers import holdings_import

    async def chunks():
        with path.open("rb") as handle:
            while block := await asyncio.to_thread(handle.read, 1 << 20):
                yield block

    engine = create_engine(to_async_url(dsn), Settings(database_url=dsn), batch=True)
    sessionmaker = create_sessionmaker(engine)
    try:
        started = time.perf_counter()
        staged = await holdings_import.stage(sessionmaker, chunks(), "ndjson", "bench")
        stage_s = time.perf_counter() - started
        started = time.perf_counter()
        await holdings_import.merge(sessionmaker, staged.import_id, chunk_size=chunk_size, workers=workers)
        merge_s = time.perf_counter() - started
        async with sessionmaker() as session:
            record, _ = await holdings_import.get_import(session, staged.import_id)
            return stage_s, merge_s, {"status": record.status, "customers_done": record.customers_done}
    finally:
        await engine.dispose()


async def hand_written(dsn: str, rows: list[tuple]) -> tuple[float, float, dict]:
    """COPY of the same rows (holdings, balance history, AUM snapshot) and the four statements; (copy s,
    statements s, customers whose tier differs from the service's, per policy). Run after the service's
    holdings, history and snapshots were removed, its assignments kept for the comparison."""
    conn = await asyncpg.connect(dsn)
    try:
        holdings = [(r[0], r[2], r[4], r[5]) for r in rows]
        aum = [(r[0], r[5], r[4] if r[3] in AUM_CATEGORIES else Decimal(0)) for r in rows]
        started = time.perf_counter()
        await conn.copy_records_to_table(
            "holding", records=holdings, columns=["customer_id", "product_code", "balance", "as_of"]
        )
        await conn.copy_records_to_table(
            "holding_balance", records=holdings, columns=["customer_id", "product_code", "balance", "as_of"]
        )
        await conn.copy_records_to_table("customer_aum_daily", records=aum, columns=["customer_id", "day", "aum"])
        copied = time.perf_counter() - started
        started = time.perf_counter()
        for key, case in HAND_WRITTEN.items():
            await conn.execute(
                f"CREATE TEMP TABLE hand_{key} AS SELECT customer_id, {case} AS tier FROM customer_features"
            )
        statements = time.perf_counter() - started
        mismatches = {}
        for key in HAND_WRITTEN:
            mismatches[key] = await conn.fetchval(
                f"SELECT count(*) FROM hand_{key} h LEFT JOIN tier_assignment a ON a.customer_id = h.customer_id "
                "AND a.policy_id = (SELECT id FROM tier_policy WHERE key = $1) "
                "WHERE a.qualified_code IS DISTINCT FROM h.tier",
                key,
            )
        return copied, statements, mismatches
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2, help="chunks merged at once (the service's default)")
    args = parser.parse_args()
    rows = balance_rows(args.customers)
    url = create_database(server_url(), f"tierwise_bulkimport_bench_{uuid.uuid4().hex[:8]}")
    handle, name = tempfile.mkstemp(suffix=".ndjson")
    path = Path(name)
    try:
        with os.fdopen(handle, "w") as out:
            for r in rows:
                out.write(
                    json.dumps({"customer_id": r[1], "product_code": r[2], "balance": str(r[4]), "as_of": str(r[5])})
                    + "\n"
                )
        upgrade_to_head(url)
        dsn = plain_dsn(url)
        started = time.perf_counter()
        asyncio.run(build(dsn, args.customers))
        asyncio.run(settle(dsn))
        built = time.perf_counter() - started
        stage_s, merge_s, outcome = asyncio.run(service_import(dsn, path, args.chunk_size, args.workers))
        service = stage_s + merge_s
        assert outcome["status"] == "succeeded" and outcome["customers_done"] == args.customers, outcome

        async def reset() -> None:
            conn = await asyncpg.connect(dsn)
            try:
                await conn.execute("TRUNCATE holding, holding_balance, customer_aum_daily")
            finally:
                await conn.close()

        asyncio.run(reset())
        asyncio.run(settle(dsn))
        copied, statements, mismatches = asyncio.run(hand_written(dsn, rows))
    finally:
        path.unlink(missing_ok=True)
        drop_database(url)
    baseline = copied + statements
    print(
        f"customers={args.customers} rows={len(rows)} chunk_size={args.chunk_size} workers={args.workers} "
        f"build_s={built:.1f} load_average={os.getloadavg()}"
    )
    print(
        f"service_import_s={service:.2f} ({args.customers / service:.0f} rows/s): "
        f"stage {stage_s:.2f}, merge {merge_s:.2f}"
    )
    print(f"copy_s={copied:.2f} hand_written_statements_s={statements:.2f} baseline_s={baseline:.2f}")
    print(f"ratio_service_to_baseline={service / baseline:.2f}")
    print(f"tier_mismatches={mismatches}")


if __name__ == "__main__":
    main()
