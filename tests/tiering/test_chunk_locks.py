"""Batch chunks and writers of customers exclude each other by spans of customer ids (app/customers/service.py):
a writer of a customer whose chunk is being evaluated waits for the chunk to commit, a chunk waits for writers
already under way, and chunks of different spans run side by side. Real transactions on a database of their own;
a wait is seen where Postgres shows it (pg_stat_activity.wait_event_type = 'Lock'), not inferred from a delay."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.core.migrations import upgrade_to_head
from app.customers.locks import LOCK_SPAN, hold_chunk, lock_customer_range, lock_customers
from tests.factories import inserting_customers


@pytest.fixture
async def sessionmaker(scratch_database):
    url = scratch_database()
    upgrade_to_head(url)
    engine = create_async_engine(url, pool_size=4)
    async with engine.begin() as connection:
        for customer_id in (1, 2, LOCK_SPAN + 1):
            await connection.execute(
                text(
                    inserting_customers(
                        "INSERT INTO customer (id, external_id, segment, onboarded_at) "
                        "VALUES (:id, :e, 'retail', now())"
                    )
                ),
                {"id": customer_id, "e": f"S{customer_id}"},
            )
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def _finished_within(awaitable, seconds: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(awaitable), seconds)
        return True
    except TimeoutError:
        return False


async def _write(sessionmaker, lock) -> tuple[asyncio.Future, int]:
    """A writer's transaction taking `lock`, under way; returns its task and its backend's pid."""
    backend = asyncio.get_running_loop().create_future()

    async def write() -> None:
        async with sessionmaker() as session, session.begin():
            backend.set_result(await session.scalar(text("SELECT pg_backend_pid()")))
            await lock(session)

    task = asyncio.ensure_future(write())
    return task, await backend


async def _waits_on_a_lock(sessionmaker, task, pid: int) -> bool:
    """Whether the backend comes to wait on a lock (pg_stat_activity says so) while its task is still pending;
    False when the task finishes instead."""
    async with sessionmaker() as observer:
        for _ in range(500):
            if task.done():
                return False
            waiting = await observer.scalar(
                text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :pid"), {"pid": pid}
            )
            await observer.rollback()
            if waiting:
                return not task.done()
            await asyncio.sleep(0.01)
    raise AssertionError("the backend neither waited on a lock nor finished")


async def test_a_writer_waits_for_the_chunk_holding_its_customer(sessionmaker):
    async with sessionmaker() as chunk:
        assert await hold_chunk(chunk, 0, LOCK_SPAN - 1) == 2
        writer, writer_pid = await _write(sessionmaker, lambda s: lock_customers(s, [2]))
        elsewhere, _ = await _write(sessionmaker, lambda s: lock_customers(s, [LOCK_SPAN + 1]))
        assert await _finished_within(elsewhere, 5)  # another span's customer: not held
        assert await _waits_on_a_lock(sessionmaker, writer, writer_pid)  # the chunk's customer: waits
        await chunk.commit()
        assert await _finished_within(writer, 5)


async def test_an_import_range_waits_too_and_writers_do_not_wait_for_each_other(sessionmaker):
    async with sessionmaker() as chunk:
        await hold_chunk(chunk, 0, LOCK_SPAN - 1)
        imported, imported_pid = await _write(sessionmaker, lambda s: lock_customer_range(s, 1, 2))
        assert await _waits_on_a_lock(sessionmaker, imported, imported_pid)
        await chunk.commit()
        assert await _finished_within(imported, 5)
    async with sessionmaker() as first, first.begin():
        await lock_customers(first, [1])  # writers share the span; they queue only on the same customer's row
        other, _ = await _write(sessionmaker, lambda s: lock_customers(s, [2]))
        assert await _finished_within(other, 5)
        same, same_pid = await _write(sessionmaker, lambda s: lock_customers(s, [1]))
        assert await _waits_on_a_lock(sessionmaker, same, same_pid)
    assert await _finished_within(same, 5)


async def test_a_chunk_waits_for_a_writer_under_way_and_chunks_of_other_spans_do_not(sessionmaker):
    async with sessionmaker() as writer:
        await lock_customers(writer, [1])
        chunk, chunk_pid = await _write(sessionmaker, lambda s: hold_chunk(s, 0, LOCK_SPAN - 1))
        other, _ = await _write(sessionmaker, lambda s: hold_chunk(s, LOCK_SPAN, 2 * LOCK_SPAN - 1))
        assert await _finished_within(other, 5)
        assert await _waits_on_a_lock(sessionmaker, chunk, chunk_pid)
        await writer.commit()
        assert await _finished_within(chunk, 5)
