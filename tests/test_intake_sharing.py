"""Event intake shares its customers' rows (FOR KEY SHARE, app/customers/locks.py) instead of locking them: another
intake of the same customers does not wait for its share, a re-tiering batch skips the customers it holds (their
marks stay), and an erasure of one of them waits for it and then removes what it stored. Each side on its own
connection, truly in parallel; waits are seen in pg_locks, never guessed with a delay."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app.core.db import create_sessionmaker
from app.customers import flows, locks, retier
from app.customers.intake_schemas import EventBatch
from app.customers.service import erasure_token
from tests.factories import delete_customers, inserting_customers

_WAITING_ON = text(
    "SELECT count(*) FROM pg_locks w JOIN pg_locks h ON h.pid = :pid AND h.granted "
    "AND w.locktype = h.locktype AND w.database IS NOT DISTINCT FROM h.database "
    "AND w.relation IS NOT DISTINCT FROM h.relation AND w.page IS NOT DISTINCT FROM h.page "
    "AND w.tuple IS NOT DISTINCT FROM h.tuple "
    "AND w.transactionid IS NOT DISTINCT FROM h.transactionid WHERE NOT w.granted"
)


def _batch(external_ids: list[str], prefix: str, days_ago: int) -> list:
    when = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    return EventBatch.model_validate(
        {
            "events": [
                {
                    "type": "transaction",
                    "event_id": f"{prefix}-{x}",
                    "customer_id": x,
                    "occurred_at": when,
                    "amount": "5.00",
                    "direction": "debit",
                    "channel": "card",
                }
                for x in external_ids
            ]
        }
    ).events


async def _customers(engine, tag: str, count: int) -> dict[str, int]:
    async with engine.begin() as conn:
        rows = await conn.execute(
            text(
                inserting_customers(
                    "INSERT INTO customer (external_id, segment, onboarded_at) "
                    "SELECT :tag || '-' || g, 'retail', now() FROM generate_series(1, :n) g",
                    returning="external_id, id",
                )
            ),
            {"tag": tag, "n": count},
        )
        return dict(rows.all())


async def _drop(engine, ids: list[int]) -> None:
    async with engine.begin() as conn:
        for table in ("customer_offer_state", "customer_event"):  # delete_customers takes the marks and rollups
            await conn.execute(text(f"DELETE FROM {table} WHERE customer_id = ANY(:ids)"), {"ids": ids})
        await delete_customers(conn, "id = ANY(:ids)", {"ids": ids})


async def test_an_intake_does_not_wait_for_another_holding_the_same_customers_and_a_batch_skips_them(engine):
    tag = f"SHARE-{uuid.uuid4().hex[:8]}"
    customers = await _customers(engine, tag, 3)
    ids = sorted(customers.values())
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as holder:
            await holder.begin()
            assert await locks.share_customers(holder, ids) == set(ids)  # an intake between its share and writes
            async with sessionmaker() as other, other.begin():
                recorded = await asyncio.wait_for(
                    flows.ingest_events(other, _batch(sorted(customers), f"{tag}-b", 1)), timeout=30
                )
            assert recorded == 3  # committed while the first intake still holds the customers
            async with sessionmaker() as batch, batch.begin():
                await asyncio.wait_for(retier.run_batch(batch, 100), timeout=30)  # skips them, does not wait
            async with engine.connect() as conn:
                left = await conn.scalar(
                    text("SELECT count(*) FROM retier_mark WHERE customer_id = ANY(:ids)"), {"ids": ids}
                )
            assert left == 3, "a batch re-tiered customers an intake holds"
            await holder.rollback()
        async with sessionmaker() as batch, batch.begin():
            assert await retier.run_batch(batch, 100) >= 3
        async with engine.connect() as conn:
            assert not await conn.scalar(
                text("SELECT count(*) FROM retier_mark WHERE customer_id = ANY(:ids)"), {"ids": ids}
            )
    finally:
        await _drop(engine, ids)


async def test_an_erasure_waits_for_an_intake_of_its_customer_and_then_removes_what_it_stored(engine, test_settings):
    tag = f"SHERASE-{uuid.uuid4().hex[:8]}"
    customers = await _customers(engine, tag, 2)
    ids = sorted(customers.values())
    erased_external = f"{tag}-1"
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as intake, sessionmaker() as eraser:
            await intake.begin()
            assert await flows.ingest_events(intake, _batch(sorted(customers), f"{tag}-a", 0)) == 2
            pid = await intake.scalar(text("SELECT pg_backend_pid()"))

            async def erase() -> None:
                async with eraser.begin():
                    await flows.erase_customer(eraser, erased_external, test_settings.api_key_pepper, f"test-{tag}")

            erasure = asyncio.ensure_future(erase())
            async with engine.connect() as watcher:
                deadline = time.monotonic() + 30
                while not await watcher.scalar(_WAITING_ON, {"pid": pid}):
                    assert time.monotonic() < deadline and not erasure.done(), "the erasure did not wait"
                    await watcher.rollback()
                    await asyncio.sleep(0.05)
            await intake.commit()
            await asyncio.wait_for(erasure, timeout=30)
        async with engine.connect() as conn:
            for table in ("customer_event", "customer_activity_daily", "retier_mark"):
                counts = dict(
                    (
                        await conn.execute(
                            text(f"SELECT customer_id, count(*) FROM {table} WHERE customer_id = ANY(:ids) GROUP BY 1"),
                            {"ids": ids},
                        )
                    ).all()
                )
                assert customers[erased_external] not in counts, f"{table} keeps rows of the erased customer"
                assert counts.get(customers[f"{tag}-2"]), f"{table} lost the other customer's rows"
            row = (
                await conn.execute(
                    text("SELECT erased_at, last_txn_at FROM customer WHERE id = :id"),
                    {"id": customers[erased_external]},
                )
            ).one()
        assert row.erased_at is not None and row.last_txn_at is None
    finally:
        await _drop(engine, ids)
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM audit_event WHERE actor = :actor"), {"actor": f"test-{tag}"})
            token = erasure_token(erased_external, test_settings.api_key_pepper)
            await conn.execute(text("DELETE FROM customer_erasure WHERE token = :t"), {"t": token})
