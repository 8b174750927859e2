"""Batch chunks and writers of customers exclude each other by spans of customer ids (app/customers/service.py):
a writer of a customer whose chunk is being evaluated waits for the chunk to commit, a chunk waits for writers
already under way, and chunks of different spans run side by side. Real transactions on a database of their own."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from app.core.migrations import upgrade_to_head
from app.customers.locks import LOCK_SPAN, hold_chunk, lock_customer_range, lock_customers


@pytest.fixture
async def sessionmaker(scratch_database):
    url = scratch_database()
    upgrade_to_head(url)
    engine = create_async_engine(url, pool_size=4)
    async with engine.begin() as connection:
        for customer_id in (1, 2, LOCK_SPAN + 1):
            await connection.execute(text("INSERT INTO customer (id, external_id, segment, onboarded_at) "
                                          "VALUES (:id, :e, 'retail', now())"), {"id": customer_id, "e": f"S{customer_id}"})
    yield async_sessionmaker(engine, expire_on_commit=False)
    await engine.dispose()


async def _finished_within(awaitable, seconds: float) -> bool:
    try:
        await asyncio.wait_for(asyncio.shield(awaitable), seconds)
        return True
    except TimeoutError:
        return False


async def _write(sessionmaker, lock) -> None:
    async with sessionmaker() as session, session.begin():
        await lock(session)


async def test_a_writer_waits_for_the_chunk_holding_its_customer(sessionmaker):
    async with sessionmaker() as chunk:
        assert await hold_chunk(chunk, 0, LOCK_SPAN - 1) == 2
        writer = asyncio.ensure_future(_write(sessionmaker, lambda s: lock_customers(s, [2])))
        elsewhere = asyncio.ensure_future(_write(sessionmaker, lambda s: lock_customers(s, [LOCK_SPAN + 1])))
        assert await _finished_within(elsewhere, 5)  # another span's customer: not held
        assert not await _finished_within(writer, 0.5)  # the chunk's customer: waits
        await chunk.commit()
        assert await _finished_within(writer, 5)


async def test_an_import_range_waits_too_and_writers_do_not_wait_for_each_other(sessionmaker):
    async with sessionmaker() as chunk:
        await hold_chunk(chunk, 0, LOCK_SPAN - 1)
        imported = asyncio.ensure_future(_write(sessionmaker, lambda s: lock_customer_range(s, 1, 2)))
        assert not await _finished_within(imported, 0.5)
        await chunk.commit()
        assert await _finished_within(imported, 5)
    async with sessionmaker() as first, first.begin():
        await lock_customers(first, [1])  # writers share the span; they queue only on the same customer's row
        assert await _finished_within(asyncio.ensure_future(_write(sessionmaker, lambda s: lock_customers(s, [2]))), 5)
        same = asyncio.ensure_future(_write(sessionmaker, lambda s: lock_customers(s, [1])))
        assert not await _finished_within(same, 0.5)
    assert await _finished_within(same, 5)


async def test_a_chunk_waits_for_a_writer_under_way_and_chunks_of_other_spans_do_not(sessionmaker):
    async with sessionmaker() as writer:
        await lock_customers(writer, [1])
        chunk = asyncio.ensure_future(_write(sessionmaker, lambda s: hold_chunk(s, 0, LOCK_SPAN - 1)))
        other = asyncio.ensure_future(_write(sessionmaker, lambda s: hold_chunk(s, LOCK_SPAN, 2 * LOCK_SPAN - 1)))
        assert await _finished_within(other, 5)
        assert not await _finished_within(chunk, 0.5)
        await writer.commit()
        assert await _finished_within(chunk, 5)
