"""A tier run is alive while its worker holds the run's advisory lock: a second run of the target is a 409 only
then; a run whose worker is gone is failed by the next start at once (no waiting period), and a worker whose run
was failed meanwhile does nothing more. The lock holder stands on a connection of its own (a real second backend)."""

import asyncio

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import create_sessionmaker
from app.core.migrations import upgrade_to_head
from app.tiering import runs as batch
from tests.factories import inserting_customers
from tests.tiering.test_assignment import make_customer


@pytest.fixture
async def worker_lock(engine):
    """Hold a run's lock from another backend, as a live worker does: worker_lock(run_id)."""
    async with engine.connect() as other:

        async def hold(run_id: int) -> None:
            await other.execute(text("SELECT pg_advisory_lock(:ns, :id)"), {"ns": batch.RUN_LOCKS, "id": run_id})
            await other.commit()

        yield hold
        await other.execute(text("SELECT pg_advisory_unlock_all()"))
        await other.commit()


async def _status(session, run_id: int) -> tuple:
    return (
        await session.execute(
            text("SELECT status, error, finished_at IS NOT NULL, processed FROM tier_run WHERE id = :id"),
            {"id": run_id},
        )
    ).one()


async def test_a_second_run_is_refused_while_the_first_one_s_worker_holds_its_lock(wealth, sessionmaker, worker_lock):
    async with sessionmaker() as s:
        first = await batch.start_run(s, None, "cron")
        await worker_lock(first.id)
        with pytest.raises(batch.TierRunAlreadyRunning):
            await batch.start_run(s, None, "cron")
        assert (await _status(s, first.id))[0] == "running"


async def test_a_run_whose_worker_is_gone_is_failed_by_the_next_start_at_once(wealth, sessionmaker):
    async with sessionmaker() as s:
        first = await batch.start_run(s, None, "cron")  # recorded, then its worker never claimed it (or died)
        await s.commit()
        second = await batch.start_run(s, None, "cron")
        await s.commit()
        status, error, finished, _ = await _status(s, first.id)
        assert (status, error, finished) == ("failed", batch.ABANDONED, True)
        assert (await _status(s, second.id))[0] == "running"


async def test_a_worker_whose_run_was_failed_before_it_claimed_it_does_nothing(
    client, as_role, wealth, session, sessionmaker
):
    await make_customer(client, as_role, "L1", "60000.00")
    await session.execute(text("DELETE FROM tier_assignment"))
    await session.commit()
    async with sessionmaker() as s:
        late = await batch.start_run(s, None, "cron")
        await s.commit()
        current = await batch.start_run(s, None, "cron")  # started before `late`'s worker took its lock
        await s.commit()
    await batch.execute_run(sessionmaker, late.id)
    assert await _status(session, late.id) == ("failed", batch.ABANDONED, True, 0)
    assert await session.scalar(text("SELECT count(*) FROM tier_assignment")) == 0
    await batch.execute_run(sessionmaker, current.id)
    assert (await _status(session, current.id))[0] == "succeeded"
    assert await session.scalar(text("SELECT count(*) FROM tier_assignment")) == 1


async def test_a_worker_that_lost_its_run_to_a_new_start_stops_at_its_next_chunk(
    client, as_role, wealth, session, sessionmaker, monkeypatch
):
    for i in range(6):
        await make_customer(client, as_role, f"W{i}", "60000.00")
    await session.execute(text("DELETE FROM tier_assignment"))
    await session.commit()
    async with sessionmaker() as s:
        run = await batch.start_run(s, None, "cron")
        await s.commit()
    real_chunk, chunks = batch._evaluate_chunk, []

    async def failed_by_another_start_before_the_second_chunk(*args):
        chunks.append(1)
        if len(chunks) == 2:  # as a start that found the run's lock gone would have done
            async with sessionmaker() as other:
                await other.execute(
                    text("UPDATE tier_run SET status = 'failed', error = 'theirs' WHERE id = :id"), {"id": run.id}
                )
                await other.commit()
        return await real_chunk(*args)

    monkeypatch.setattr(batch, "_evaluate_chunk", failed_by_another_start_before_the_second_chunk)
    await batch.execute_run(sessionmaker, run.id, chunk_size=3)
    status, error, _, processed = await _status(session, run.id)
    assert (status, error) == ("failed", "theirs")  # not overwritten as succeeded, nor with its own error
    first_chunk = await session.scalar(
        text("SELECT count(*) FROM customer WHERE id <= (SELECT min(id) - min(id) % 3 + 2 FROM customer)")
    )
    assert processed == first_chunk
    assert await session.scalar(text("SELECT count(*) FROM tier_assignment")) == first_chunk  # no second chunk


async def test_the_worker_releases_its_lock_when_the_run_ends(wealth, sessionmaker, session):
    async with sessionmaker() as s:
        run = await batch.start_run(s, None, "cron")
        await s.commit()
    await batch.execute_run(sessionmaker, run.id)
    held = await session.scalar(
        text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = :ns AND objid = :id"
        ),
        {"ns": batch.RUN_LOCKS, "id": run.id},
    )
    assert held == 0


async def test_the_lock_stays_on_a_connection_of_its_own_for_the_whole_run_and_never_goes_back_to_the_pool(
    scratch_database, monkeypatch
):
    """On a real engine (not the tests' single connection): a session would hand its connection, lock and all,
    back to the pool at its first commit, where a chunk (or any request) would pick it up."""
    url = scratch_database()
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_async_engine(url, pool_size=2)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as s:
            await s.execute(
                text(
                    inserting_customers(
                        "INSERT INTO customer (external_id, segment, onboarded_at) "
                        "SELECT 'L' || i, 'retail', now() FROM generate_series(1, 4) i"
                    )
                )
            )
            run = await batch.start_run(s, None, "cron")
            await s.commit()
        real_chunk, seen = batch._evaluate_chunk, []

        async def watched(*args):
            async with sessionmaker() as s:
                seen.append(
                    (
                        await s.execute(
                            text(
                                "SELECT pg_backend_pid(), (SELECT array_agg(pid) FROM pg_locks "
                                "WHERE locktype = 'advisory' AND database = "
                                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                                "AND classid = :ns AND objid = :id AND granted)"
                            ),
                            {"ns": batch.RUN_LOCKS, "id": run.id},
                        )
                    ).one()
                )
            return await real_chunk(*args)

        monkeypatch.setattr(batch, "_evaluate_chunk", watched)
        await batch.execute_run(sessionmaker, run.id, chunk_size=2)
        assert len(seen) == 3  # ids 1..4 in chunks aligned to 2: [1], [2, 3], [4]
        for chunk_pid, holders in seen:
            assert holders is not None and len(holders) == 1 and chunk_pid not in holders
        async with sessionmaker() as s:
            assert (await s.scalar(text("SELECT status FROM tier_run WHERE id = :id"), {"id": run.id})) == "succeeded"
            assert (
                await s.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = "
                        "(SELECT oid FROM pg_database WHERE datname = current_database()) AND classid = :ns"
                    ),
                    {"ns": batch.RUN_LOCKS},
                )
                == 0
            )
    finally:
        await engine.dispose()
