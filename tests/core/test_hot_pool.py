"""The hot reads' pool (app/core/hotpool.py) on a real server: connections reused as they are, a connection that may
not be clean never handed out again, waiters served in turn, a read past its timeout a 503."""

import asyncio
from types import SimpleNamespace

import pytest

from app.core.db import create_read_pool, read_connection
from app.core.errors import ServiceUnavailable


@pytest.fixture
async def hot(engine, test_settings):
    settings = test_settings.model_copy(update={"read_pool_size": 2, "db_pool_timeout_s": 0.5, "read_timeout_s": 0.5})
    pool = await create_read_pool(engine, settings)
    try:
        yield SimpleNamespace(read_pool=pool, settings=settings)
    finally:
        await pool.close()


async def _backend(state) -> int:
    async with read_connection(state) as connection:
        return await connection.fetchval("SELECT pg_backend_pid()")


async def test_a_released_connection_is_the_next_one_handed_out(hot):
    first = await _backend(hot)
    assert await _backend(hot) == first
    assert hot.read_pool.get_size() == 2


async def test_a_statement_past_the_read_timeout_is_a_503_and_its_connection_is_not_reused(hot):
    async with read_connection(hot) as connection:
        timed_out = await connection.fetchval("SELECT pg_backend_pid()")
    with pytest.raises(ServiceUnavailable):
        async with read_connection(hot) as connection:
            assert await connection.fetchval("SELECT pg_backend_pid()") == timed_out
            await connection.execute("SELECT pg_sleep(5)")
    backends = {await _backend(hot) for _ in range(4)}
    assert timed_out not in backends
    assert hot.read_pool.get_size() <= 2


async def test_a_read_cancelled_mid_statement_leaves_no_busy_connection_in_the_pool(hot):
    async def sleeper():
        async with read_connection(hot) as connection:
            await connection.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(4):  # a connection still running the cancelled statement would raise "another operation"
        async with read_connection(hot) as connection:
            assert await connection.fetchval("SELECT 1") == 1


async def test_a_connection_left_in_a_transaction_is_not_handed_out_again(hot):
    async with read_connection(hot) as connection:
        left = await connection.fetchval("SELECT pg_backend_pid()")
        await connection.execute("BEGIN")
    assert left not in {await _backend(hot) for _ in range(4)}


async def test_waiters_get_released_connections_in_turn_and_a_long_wait_is_a_503(hot):
    order = []

    async def reader(name: str, hold: float) -> None:
        async with read_connection(hot) as connection:
            await connection.fetchval("SELECT 1")
            order.append(name)
            await asyncio.sleep(hold)

    await asyncio.gather(reader("a", 0.2), reader("b", 0.2), reader("c", 0), reader("d", 0))
    assert sorted(order[:2]) == ["a", "b"] and sorted(order[2:]) == ["c", "d"]  # c and d waited for a and b

    async def holder(release: asyncio.Event) -> None:
        async with read_connection(hot):
            await release.wait()

    release = asyncio.Event()
    holders = [asyncio.create_task(holder(release)) for _ in range(2)]
    await asyncio.sleep(0.05)
    with pytest.raises(ServiceUnavailable):  # both held past db_pool_timeout_s
        await _backend(hot)
    release.set()
    await asyncio.gather(*holders)
    assert await _backend(hot)  # the timed-out waiter left nothing behind: the pool serves again


async def test_a_waiter_cancelled_as_a_connection_is_released_leaves_the_pool_whole(hot):
    pool = hot.read_pool
    held = [await pool.acquire(1), await pool.acquire(1)]
    waiting = asyncio.create_task(pool.acquire(1))
    await asyncio.sleep(0.05)
    waiting.cancel()  # its wait is cancelled at once, the task resumes later:
    pool.release(held.pop())  # the release passes the cancelled waiter over
    with pytest.raises(asyncio.CancelledError):
        await waiting
    pool.release(held.pop())
    assert await _backend(hot) and pool.get_size() == 2
