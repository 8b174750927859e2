"""Batch tier runs: every customer under one policy (or all active ones), set-based, in chunks by customer id.

Each chunk is one transaction running the same assignment statement a single customer gets, so a run that dies
mid-way leaves every customer consistent (each chunk committed whole or not at all) and is marked failed; a new
run simply evaluates everyone again.

A run is alive while its worker holds the run's session-level advisory lock (RUN_LOCKS, run id) on a connection of
its own: Postgres releases it the moment that connection ends, whether the worker's process was killed, the
database restarted or the connection was cut. A run marked running whose lock nobody holds has lost its worker;
the next start fails it and begins at once, with no waiting period.
"""

import asyncio
import contextlib
import logging
import time

from sqlalchemy import exists, func, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.audit import service as audit_service
from app.core.errors import Conflict
from app.core.metrics import TIER_RUN_SECONDS
from app.core.pagination import PageRequest, keyset
from app.customers.locks import LOCK_SPAN, hold_chunk
from app.customers.models import Customer
from app.tiering.assignment.compile import AssignmentCounts, assign, compiled_active_versions
from app.tiering.assignment.refresh import count_transitions, expire_overrides
from app.tiering.models import TierAssignment, TierPolicy, TierRun

log = logging.getLogger(__name__)
CHUNK_SIZE = LOCK_SPAN  # a chunk holds one span of the customer locks
CHUNK_WORK_MEM = "64MB"  # per sort or hash of a chunk's transaction (a chunk's rows, not the population's)
RUN_LOCKS = 7312  # advisory-lock namespace of live runs (7310: statistics refresh, 7311: customer spans)
RECORD_FAILURE_FOR_S = 900  # a worker that lost the database keeps trying this long to record its run as failed
UNIQUE_VIOLATION = "23505"
ABANDONED = "abandoned: its worker lost its database connection or its process ended"

# Runs of the target marked running whose lock nobody holds. Taking each one's lock for this transaction makes the
# verdict safe against a worker claiming its run meanwhile: that worker waits for this transaction, then sees its
# run failed and stops.
_FAIL_ABANDONED = text(
    "UPDATE tier_run SET status = 'failed', finished_at = now(), error = :error "
    "WHERE id IN (SELECT id FROM tier_run WHERE status = 'running' AND coalesce(policy_id, 0) = :target) "
    f"AND pg_try_advisory_xact_lock({RUN_LOCKS}, CAST(id AS integer)) "
    "RETURNING id, requested_by, status, processed, upgrades, downgrades, error"
)
_CLAIM = text(f"SELECT pg_advisory_lock({RUN_LOCKS}, CAST(:run_id AS integer))")
_RELEASE = text(f"SELECT pg_advisory_unlock({RUN_LOCKS}, CAST(:run_id AS integer))")


class TierRunAlreadyRunning(Conflict):
    pass


class RunAbandoned(Exception):
    """The run was failed by another start while this worker went on (it had lost its lock)."""


async def start_run(session: AsyncSession, policy: TierPolicy | None, actor: str) -> TierRun:
    """Record a new run (the caller commits, then calls execute_run). 409 while a live run for the same target
    exists; a run of the target whose worker is gone is marked failed first.

    Between the caller's commit and its worker claiming the run (a background task starting), the run holds no lock
    yet: a start for the same target in those few milliseconds fails it, and its worker then does nothing."""
    abandoned = await session.execute(_FAIL_ABANDONED, {"target": policy.id if policy else 0, "error": ABANDONED})
    await _audit_outcomes(session, abandoned.all())
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
    await audit_service.record(
        session,
        actor,
        "tier_run.start",
        "tier_run",
        run.id,
        None,
        {"policy": policy.key if policy else None, "total": run.total, "status": run.status},
    )
    return run


_OUTCOME = (
    TierRun.id,
    TierRun.requested_by,
    TierRun.status,
    TierRun.processed,
    TierRun.upgrades,
    TierRun.downgrades,
    TierRun.error,
)


async def _audit_outcomes(session: AsyncSession, finished) -> None:
    """Audit each run just finished (rows of _OUTCOME's columns), in the transaction that finished it, as done by
    the key that started it."""
    for run in finished:
        await audit_service.record(
            session,
            run.requested_by,
            "tier_run.finish",
            "tier_run",
            run.id,
            {"status": "running"},
            {
                "status": run.status,
                "processed": run.processed,
                "upgrades": run.upgrades,
                "downgrades": run.downgrades,
                "error": run.error,
            },
        )


async def execute_run(
    sessionmaker: async_sessionmaker, run_id: int, chunk_size: int = CHUNK_SIZE, workers: int = 1
) -> None:
    """Claim the run (its lock, held on a connection of its own until the run ends), evaluate its policies chunk
    by chunk, each chunk in its own transaction (`workers` chunks at a time, on their own connections), and mark
    the run done or failed. A run already failed when claimed (see start_run) is left alone."""
    async with contextlib.AsyncExitStack() as stack:
        try:
            holder = await stack.enter_async_context(_lock_holder(sessionmaker))
            await holder.execute(_CLAIM, {"run_id": run_id})
            claimed = await holder.scalar(select(TierRun.status == "running").where(TierRun.id == run_id))
        except Exception as exc:  # the database is away: the run holds no lock, and the next start fails it
            log.warning("tier run not started", extra={"run_id": run_id, "error": type(exc).__name__})
            return
        try:
            if claimed:
                await _evaluate_run(sessionmaker, run_id, chunk_size, workers)
        finally:
            await _release(holder, run_id)


@contextlib.asynccontextmanager
async def _lock_holder(sessionmaker: async_sessionmaker):
    """The connection that holds a run's lock: one of the engine's, kept for the run, in autocommit (the run's
    lifetime is not a transaction's). A session would not do: it hands its connection back to the pool at each
    commit, and the lock with it. Tests bind the sessionmaker to one connection; that one holds it then."""
    bind = sessionmaker.kw["bind"]
    if not isinstance(bind, AsyncEngine):
        yield bind
        return
    async with bind.connect() as connection:
        yield await connection.execution_options(isolation_level="AUTOCOMMIT")


async def _release(holder: AsyncConnection, run_id: int) -> None:
    """Give the run's lock back; when that fails (the connection is gone, and the lock with it), drop the
    connection: one whose lock state is unknown never goes back to the pool."""
    try:
        await holder.execute(_RELEASE, {"run_id": run_id})
    except BaseException as exc:
        with contextlib.suppress(Exception):
            await holder.invalidate()
        if not isinstance(exc, Exception):
            raise


async def _evaluate_run(sessionmaker: async_sessionmaker, run_id: int, chunk_size: int, workers: int) -> None:
    started = time.monotonic()
    try:
        async with sessionmaker() as session:
            run = await session.get(TierRun, run_id)
            versions = await compiled_active_versions(session, [run.policy_id] if run.policy_id else None, "range")
            lowest, highest = (
                await session.execute(
                    select(func.min(Customer.id), func.max(Customer.id)).where(Customer.erased_at.is_(None))
                )
            ).one()
            # A policy's first run: the planner's statistics know none of its assignments yet, and would have each
            # chunk read all the assignments written so far; once the first chunk is in, they are refreshed.
            first_run = not await session.scalar(
                select(exists().where(TierAssignment.policy_id.in_([compiled.policy_id for compiled in versions])))
            )
        # Chunks are ranges of chunk_size ids (customers are never deleted, so ranges hold about that many),
        # aligned to multiples of chunk_size: with the default size each chunk is one span of the customer locks.
        chunks = (
            []
            if lowest is None
            else [
                (max(start, lowest), min(start + chunk_size - 1, highest))
                for start in range(lowest - lowest % chunk_size, highest + 1, chunk_size)
            ]
        )
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
            succeeded = await session.execute(
                update(TierRun)
                .where(TierRun.id == run_id, TierRun.status == "running")
                .values(status="succeeded", finished_at=func.now(), heartbeat_at=func.now())
                .returning(*_OUTCOME)
            )
            await _audit_outcomes(session, succeeded.all())
            await session.commit()
        TIER_RUN_SECONDS.labels("succeeded").observe(time.monotonic() - started)
    except Exception as exc:
        TIER_RUN_SECONDS.labels("failed").observe(time.monotonic() - started)
        log.exception("tier run failed", extra={"run_id": run_id})
        await _record_failure(
            sessionmaker, run_id, f"{type(exc).__name__}: the run stopped; customers processed so far are consistent"
        )


async def _record_failure(sessionmaker: async_sessionmaker, run_id: int, error: str) -> None:
    """Mark the run failed; when the database is away, keep trying until it is back (for RECORD_FAILURE_FOR_S):
    the run then reads failed as soon as the database answers. A run already failed keeps its first error."""
    deadline, pause = time.monotonic() + RECORD_FAILURE_FOR_S, 0.25
    while True:
        try:
            async with sessionmaker() as session:
                failed = await session.execute(
                    update(TierRun)
                    .where(TierRun.id == run_id, TierRun.status == "running")
                    .values(status="failed", finished_at=func.now(), error=error)
                    .returning(*_OUTCOME)
                )
                await _audit_outcomes(session, failed.all())
                await session.commit()
            return
        except Exception as exc:
            if time.monotonic() + pause > deadline:
                log.warning("tier run failure not recorded", extra={"run_id": run_id, "error": type(exc).__name__})
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 2.0)


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
        progress = await session.execute(
            update(TierRun)
            .where(TierRun.id == run_id, TierRun.status == "running")
            .values(
                processed=TierRun.processed + customers,
                upgrades=TierRun.upgrades + counts.upgrades,
                downgrades=TierRun.downgrades + counts.downgrades,
                heartbeat_at=func.now(),
            )
        )
        if progress.rowcount != 1:
            raise RunAbandoned(f"tier run {run_id} was failed while its worker went on")
        count_transitions(session, counts)
        await session.commit()


async def list_runs(session: AsyncSession, page: PageRequest, status: str | None = None) -> list:
    """Runs newest first (rows of run and policy key), the page's limit + 1 of them."""
    query = select(TierRun, TierPolicy.key).outerjoin(TierPolicy, TierPolicy.id == TierRun.policy_id)
    if status is not None:
        query = query.where(TierRun.status == status)
    return list((await session.execute(keyset(query, TierRun.id, page, descending=True))).all())


async def get_run(session: AsyncSession, run_id: int) -> tuple[TierRun, str | None]:
    from app.core.errors import NotFound

    row = (
        await session.execute(
            select(TierRun, TierPolicy.key)
            .outerjoin(TierPolicy, TierPolicy.id == TierRun.policy_id)
            .where(TierRun.id == run_id)
        )
    ).first()
    if row is None:
        raise NotFound(f"No tier run {run_id}.")
    return row[0], row[1]
