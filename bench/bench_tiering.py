"""Batch tiering over the whole population (the service's tier run: set-based chunks, grace applied, transitions
recorded) beside one hand-written SQL statement computing the same tiers over the same rows, in the same run.

Usage: python -m bench.bench_tiering --dsn postgresql://...   (a database loaded with `tierwise demo`)
"""

import argparse
import asyncio
import time

from sqlalchemy import text

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker
from app.core.embedded import to_async_url
from app.tiering import runs
from app.tiering.policies import get_policy, load_default_policies

# The default wealth policy written by hand: the same thresholds over the same view.
HAND_WRITTEN = """
CREATE TEMP TABLE hand_written AS
SELECT customer_id, CASE WHEN aum_avg_3m >= 10000000 THEN 'private' WHEN aum_avg_3m >= 500000 THEN 'wealth'
                         WHEN aum_avg_3m >= 50000 THEN 'gold' ELSE 'mass' END AS tier
FROM customer_features
"""


MOVE = """
UPDATE customer_aum_daily SET aum = CASE WHEN customer_id % 40 = 0 THEN aum * 10 ELSE round(aum / 10, 2) END
WHERE customer_id % 20 = 0
"""


_SERVER_STATE = text("SELECT pg_current_wal_lsn()::text, checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter")


def _lsn(text_lsn: str) -> int:
    high, low = text_lsn.split("/")
    return int(high, 16) << 32 | int(low, 16)


async def timed_run(sessionmaker, policy, chunk_size: int, workers: int) -> tuple[float, dict]:
    """One run, timed; with the WAL it wrote and the checkpoints that began meanwhile (server-wide figures)."""
    async with sessionmaker() as session:
        run = await runs.start_run(session, policy, "bench")
        await session.commit()
        wal_before, checkpoints_before = (await session.execute(_SERVER_STATE)).one()
    started = time.perf_counter()
    await runs.execute_run(sessionmaker, run.id, chunk_size, workers)
    elapsed = time.perf_counter() - started
    async with sessionmaker() as session:
        run, _ = await runs.get_run(session, run.id)
        assert run.status == "succeeded", run.error
        wal_after, checkpoints_after = (await session.execute(_SERVER_STATE)).one()
        wal = _lsn(wal_after) - _lsn(wal_before)
        return elapsed, {
            "processed": run.processed,
            "upgrades": run.upgrades,
            "downgrades": run.downgrades,
            "wal_mb": round(wal / 2**20),
            "checkpoints": checkpoints_after - checkpoints_before,
        }


async def main(dsn: str, chunk_size: int, workers: int) -> None:
    url = to_async_url(dsn)
    settings = Settings(database_url=dsn)
    engine = create_engine(url, settings)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        await load_default_policies(session, "bench")
        await session.commit()
        policy = await get_policy(session, "wealth")
        customers = await session.scalar(text("SELECT count(*) FROM customer WHERE erased_at IS NULL"))
        # A first run for everyone: every customer gets an assignment and an initial transition.
        await session.execute(text("DELETE FROM tier_assignment WHERE policy_id = :p"), {"p": policy.id})
        await session.execute(text("DELETE FROM tier_transition WHERE policy_id = :p"), {"p": policy.id})
        await session.commit()
    await _vacuum(engine)
    first, first_counts = await timed_run(sessionmaker, policy, chunk_size, workers)
    again, again_counts = await timed_run(sessionmaker, policy, chunk_size, workers)
    async with engine.connect() as conn:
        started = time.perf_counter()
        await conn.execute(text(HAND_WRITTEN))
        hand = time.perf_counter() - started
        mismatches = await conn.scalar(
            text(
                "SELECT count(*) FROM hand_written h LEFT JOIN tier_assignment a ON a.customer_id = h.customer_id "
                "AND a.policy_id = :p WHERE a.qualified_code IS DISTINCT FROM h.tier"
            ),
            {"p": policy.id},
        )
    # A night when 5% of customers moved: their whole AUM history x10 (upgrades, applied at once) or /10
    # (downgrades, which enter the grace period). Restored afterwards, exactly, from a saved copy.
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "CREATE TABLE IF NOT EXISTS bench_saved_aum AS SELECT * FROM customer_aum_daily "
                "WHERE customer_id % 20 = 0"
            )
        )
        await conn.execute(text(MOVE))
    try:
        moving, moving_counts = await timed_run(sessionmaker, policy, chunk_size, workers)
        async with engine.connect() as conn:
            moving_counts["now_at_risk"] = await conn.scalar(
                text("SELECT count(*) FROM tier_assignment WHERE policy_id = :p AND lower_since IS NOT NULL"),
                {"p": policy.id},
            )
    finally:
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "UPDATE customer_aum_daily d SET aum = s.aum FROM bench_saved_aum s "
                    "WHERE s.customer_id = d.customer_id AND s.day = d.day"
                )
            )
            await conn.execute(text("DROP TABLE bench_saved_aum"))
    await engine.dispose()
    print(f"customers={customers} chunk_size={chunk_size} workers={workers}")
    print(f"batch_first_run_s={first:.2f} {first_counts}")
    print(f"batch_steady_run_s={again:.2f} {again_counts}")
    print(f"batch_run_after_5pct_moved_s={moving:.2f} {moving_counts}")
    print(f"hand_written_sql_s={hand:.2f}")
    print(f"ratio_first_run_to_hand_written={first / hand:.2f}")
    print(f"ratio_steady_run_to_hand_written={again / hand:.2f}")
    print(f"ratio_run_after_5pct_moved_to_hand_written={moving / hand:.2f}")
    print(f"tier_mismatches={mismatches}")


async def _vacuum(engine) -> None:
    """Clean up after the set-up's deletes, so that the timed run does not pay for them: vacuum, and a checkpoint
    (where the role may take one) so that the set-up's writes are not flushed during the run."""
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.execute(text("VACUUM ANALYZE tier_assignment"))
        await conn.execute(text("VACUUM ANALYZE tier_transition"))
        if await conn.scalar(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")):
            await conn.execute(text("CHECKPOINT"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--chunk-size", type=int, default=50_000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    asyncio.run(main(args.dsn, args.chunk_size, args.workers))
