"""Batch tier runs: every customer under one policy (or all active ones), set-based, in chunks by customer id.

Each chunk is one transaction running the same assignment statement a single customer gets, so a run that dies
mid-way leaves every customer consistent (each chunk committed whole or not at all) and is marked failed; a new
run simply evaluates everyone again.
"""

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import exists, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.errors import Conflict
from app.customers.models import Customer
from app.customers.locks import LOCK_SPAN, hold_chunk
from app.tiering.assignment.compile import AssignmentCounts, assign, compiled_active_versions
from app.tiering.assignment.refresh import expire_overrides
from app.tiering.models import TierAssignment, TierPolicy, TierRun

log = logging.getLogger(__name__)
CHUNK_SIZE = LOCK_SPAN  # a chunk holds one span of the customer locks
CHUNK_WORK_MEM = "64MB"  # per sort or hash of a chunk's transaction (a chunk's rows, not the population's)
STALE_AFTER = timedelta(minutes=5)  # a running run without a heartbeat this long has died with its process
UNIQUE_VIOLATION = "23505"


class TierRunAlreadyRunning(Conflict):
    pass


async def start_run(session: AsyncSession, policy: TierPolicy | None, actor: str) -> TierRun:
    """Record a new run (the caller commits, then calls execute_run). 409 while one for the same target runs."""
    await session.execute(
        update(TierRun).where(TierRun.status == "running", TierRun.heartbeat_at < func.now() - STALE_AFTER)
        .values(status="failed", finished_at=func.now(), error="abandoned: no progress for 5 minutes"))
    total = await session.scalar(select(func.count()).select_from(Customer).where(Customer.erased_at.is_(None)))
    run = TierRun(policy_id=policy.id if policy else None, requested_by=actor, total=total or 0)
    try:
        async with session.begin_nested():
            session.add(run)
            await session.flush()
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION:
            target = policy.key if policy else "all policies"
            raise TierRunAlreadyRunning(f"A tier run for {target} is already running.") from None
        raise
    await session.refresh(run)
    return run


async def execute_run(sessionmaker: async_sessionmaker, run_id: int, chunk_size: int = CHUNK_SIZE,
                      workers: int = 1) -> None:
    """Evaluate the run's policies chunk by chunk, each chunk in its own transaction (`workers` chunks at a time,
    on their own connections); mark the run done or failed."""
    try:
        async with sessionmaker() as session:
            run = await session.get(TierRun, run_id)
            versions = await compiled_active_versions(session, [run.policy_id] if run.policy_id else None, "range")
            lowest, highest = (await session.execute(select(func.min(Customer.id), func.max(Customer.id))
                                                     .where(Customer.erased_at.is_(None)))).one()
            # A policy's first run: the planner's statistics know none of its assignments yet, and would have each
            # chunk read all the assignments written so far; once the first chunk is in, they are refreshed.
            first_run = not await session.scalar(select(exists().where(
                TierAssignment.policy_id.in_([compiled.policy_id for compiled in versions]))))
        # Chunks are ranges of chunk_size ids (customers are never deleted, so ranges hold about that many),
        # aligned to multiples of chunk_size: with the default size each chunk is one span of the customer locks.
        chunks = [] if lowest is None else [(max(start, lowest), min(start + chunk_size - 1, highest))
                                            for start in range(lowest - lowest % chunk_size, highest + 1, chunk_size)]
        chunks.reverse()  # workers pop from the end: lowest ids first
        stale_statistics = first_run and len(chunks) > 1

        async def worker() -> None:
            nonlocal stale_statistics
            while chunks:
                await _evaluate_chunk(sessionmaker, run_id, versions, chunks.pop())
                if stale_statistics:
                    stale_statistics = False
                    async with sessionmaker() as session:
                        await session.execute(text("ANALYZE tier_assignment"))
                        await session.commit()

        await asyncio.gather(*(worker() for _ in range(max(workers, 1))))
        async with sessionmaker() as session:
            await session.execute(update(TierRun).where(TierRun.id == run_id).values(
                status="succeeded", finished_at=func.now(), heartbeat_at=func.now()))
            await session.commit()
    except Exception as exc:
        log.exception("tier run failed", extra={"run_id": run_id})
        async with sessionmaker() as session:
            await session.execute(update(TierRun).where(TierRun.id == run_id).values(
                status="failed", finished_at=func.now(), error=f"{type(exc).__name__}: the run stopped; "
                                                                "customers processed so far are consistent"))
            await session.commit()


async def _evaluate_chunk(sessionmaker: async_sessionmaker, run_id: int, versions, id_range: tuple[int, int]) -> None:
    """One chunk, one transaction: hold its customers (so API writes to them queue), evaluate every policy."""
    id_from, id_to = id_range
    async with sessionmaker() as session:
        # Plan each chunk for its own range: a cached generic plan cannot see it and may nest-loop. Hash joins
        # and sorts over a chunk fit in memory.
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))
        await session.execute(text(f"SET LOCAL work_mem = '{CHUNK_WORK_MEM}'"))
        customers = await hold_chunk(session, id_from, id_to)
        now = await session.scalar(select(func.now()))
        counts = AssignmentCounts()
        for compiled in versions:
            counts.add(await assign(session, compiled, now, id_range=id_range))
            await expire_overrides(session, compiled.policy_id, now, id_from, id_to)
        await session.execute(update(TierRun).where(TierRun.id == run_id).values(
            processed=TierRun.processed + customers, upgrades=TierRun.upgrades + counts.upgrades,
            downgrades=TierRun.downgrades + counts.downgrades, heartbeat_at=func.now()))
        await session.commit()


async def get_run(session: AsyncSession, run_id: int) -> tuple[TierRun, str | None]:
    from app.core.errors import NotFound

    row = (await session.execute(select(TierRun, TierPolicy.key).outerjoin(TierPolicy, TierPolicy.id == TierRun.policy_id)
                                 .where(TierRun.id == run_id))).first()
    if row is None:
        raise NotFound(f"No tier run {run_id}.")
    return row[0], row[1]
