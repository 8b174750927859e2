"""Re-tiering in micro-batches: activity events and the NDJSON customer import mark their customers (a row in
retier_mark, or for an import statement one retier_mark_set row holding its customers' ids, which the worker expands
into retier_mark rows; in the intake's transaction: a rolled-back intake leaves none) instead of re-tiering them in
the request; the worker of each instance re-tiers the marked customers set-based, a batch at a time, within a few
seconds (TIERWISE_RETIER_INTERVAL_SECONDS). Holdings and profile writes stay synchronous (app.customers.flows): the
app sees the new tier after a deposit. The lag (the age of the oldest mark) is in /metrics.

A batch is one transaction: claim the oldest marks (FOR UPDATE SKIP LOCKED: several workers and instances take
disjoint customers), lock those of their customers that no other writer holds (FOR UPDATE SKIP LOCKED, which an
event intake's share of its customers' rows excludes too: app.customers.locks), mark their offer states stale,
run the batch tiering statement for them (app.tiering.assignment.refresh, with its transitions and tier.* webhook
events), and delete their marks. A
customer an intake is writing is skipped, not waited for (a batch waiting for it would hold the customers it had
locked so far, and other intakes would queue behind it): its mark stays for a later batch, which reads what the
intake wrote. An intake that meets a claimed mark leaves it (ON CONFLICT DO NOTHING takes no lock); an intake that
comes after the batch has locked the customer waits for the batch and then marks the customer again."""

import asyncio
import logging
from collections.abc import Iterable

from prometheus_client import Gauge
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.customers import locks
from app.customers.service import ACTIVITY_METRICS
from app.recommendations import offer_state
from app.tiering.assignment import refresh as tier_refresh

log = logging.getLogger(__name__)

ACTIVITY = "activity"  # what activity events can move: the policies reading an activity metric
ANY = "any"  # a profile import: every active policy

RETIER_LAG = Gauge(
    "tierwise_retier_lag_seconds",
    "Age of the oldest customer waiting to be re-tiered after an intake (0: none waiting), as the worker last saw it",
    multiprocess_mode="max",
)
RETIER_PENDING = Gauge(
    "tierwise_retier_pending", "Customers waiting to be re-tiered, as the worker last saw it", multiprocess_mode="max"
)

# Plan each statement for the range it is given (as app.customers.flows does).
_PLAN_FOR_EACH_RANGE = text("SET LOCAL plan_cache_mode = force_custom_plan")
MARK_SQL = (
    "INSERT INTO retier_mark (customer_id, scope) SELECT unnest(CAST(:ids AS bigint[])), CAST(:scope AS varchar) "
    "ORDER BY 1 ON CONFLICT DO NOTHING"
)
"""SQL of mark (:ids, :scope), for an intake that writes in one statement (app.customers.events)."""
_MARK = text(MARK_SQL)


def mark_set_written_sql(written: str) -> str:
    """SQL of a data-modifying CTE marking for every policy the customers a statement's `written` CTE returns (its
    `id` column) as one retier_mark_set row (their ids in order; none when it returns none): the NDJSON import marks
    them in its merge statement (app.customers.customer_import). A row a customer cost the import's statement a
    third of its time (the mark table's heap and two indexes); the worker expands the set (expand_sets)."""
    return (
        f"INSERT INTO retier_mark_set (customer_ids, scope) SELECT array_agg(id ORDER BY id), '{ANY}' "
        f"FROM {written} HAVING count(*) > 0"
    )


# The sets committed so far expanded into retier_mark rows and deleted, in one transaction (a crash before its commit
# leaves the sets, after it the marks: none is lost). Sets another worker is expanding are skipped. A customer marked
# already keeps that mark (ON CONFLICT DO NOTHING, as an intake's mark: a batch that has claimed it reads what the
# import wrote, or has locked the customer first and the import's set came after its commit); in customer order, as
# every writer of marks, so that expansions and intakes wait for each other without deadlock.
_EXPAND_SETS = text("""
WITH taken AS (
    DELETE FROM retier_mark_set WHERE id IN (SELECT id FROM retier_mark_set ORDER BY id FOR UPDATE SKIP LOCKED)
    RETURNING customer_ids, scope, marked_at
), expanded AS (
    INSERT INTO retier_mark (customer_id, scope, marked_at)
    SELECT DISTINCT ON (customer_id, scope) customer_id, scope, marked_at
    FROM taken, unnest(customer_ids) AS customer_id ORDER BY customer_id, scope, marked_at
    ON CONFLICT DO NOTHING
)
SELECT count(*) FROM taken
""")


# Claimed in id order from the worker's cursor (wrapping round at the end): a batch is then a dense id range when
# many are marked (an import, a busy intake) and is evaluated as a range like a chunk of a tier run, far cheaper
# than by a list of ids; every mark is reached within one sweep, so the lag is bounded by a sweep.
_CLAIM = text(
    "SELECT customer_id, scope FROM retier_mark WHERE customer_id > :after "
    "ORDER BY customer_id, scope LIMIT :limit FOR UPDATE SKIP LOCKED"
)
_DELETE = text(
    "DELETE FROM retier_mark m USING unnest(CAST(:ids AS bigint[]), CAST(:scopes AS varchar[])) AS c(id, scope) "
    "WHERE m.customer_id = c.id AND m.scope = c.scope"
)
_EXISTING = text("SELECT id FROM customer WHERE id = ANY(CAST(:ids AS bigint[]))")
_ERASE = text(
    "DELETE FROM retier_mark WHERE (customer_id, scope) IN "
    "(SELECT customer_id, scope FROM retier_mark WHERE customer_id = :id FOR UPDATE SKIP LOCKED)"
)
_ERASE_FROM_SETS = text(
    "UPDATE retier_mark_set SET customer_ids = array_remove(customer_ids, CAST(:id AS bigint)) WHERE id IN "
    "(SELECT id FROM retier_mark_set WHERE customer_ids @> ARRAY[CAST(:id AS bigint)] FOR UPDATE SKIP LOCKED)"
)
# The tables a batch reads and writes. An intake can fill them faster than autovacuum analyzes them (it looks once a
# minute, and a table filled since is planned as nearly empty): a batch's features statement then nest-loops over
# every rollup of its range once per customer, 2-3 s for 1,000 customers instead of 40 ms (bench/HISTORY.md). The
# worker analyzes those changed by more than half the rows the planner believes they hold (and 1,000) first.
STATISTICS_TABLES = (
    "customer",
    "customer_activity_daily",
    "customer_event",
    "customer_aum_daily",
    "holding",
    "tier_assignment",
    "customer_offer_state",
    "retier_mark",
)
_STALE_STATISTICS = text("""
SELECT s.relname FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = current_schema() AND s.relname = ANY(CAST(:tables AS text[]))
  AND s.n_mod_since_analyze > greatest(1000, 0.5 * greatest(c.reltuples, 0))
ORDER BY s.relname
""")
_STATISTICS_LOCK = text("SELECT pg_try_advisory_xact_lock(7312, 0)")  # one instance analyzes at a time
# What the batch's plans need of these statistics is mostly the tables' sizes, which any sample gives: a sample of
# 3,000 rows (statistics target 10) instead of 30,000 analyzes tier_assignment of 80,000 rows in 80 ms instead of
# 750 ms (bench/RESULTS.md, issue 20's import follow-up), and an import's batches analyze it several times as it
# grows. Autovacuum analyzes the tables again with the server's target later.
_SMALL_SAMPLE = text("SET LOCAL default_statistics_target = 10")
_LAG = text("""
SELECT coalesce(extract(epoch FROM now() - least((SELECT min(marked_at) FROM retier_mark),
                                                 (SELECT min(marked_at) FROM retier_mark_set))), 0),
       (SELECT count(*) FROM retier_mark) + (SELECT coalesce(sum(cardinality(customer_ids)), 0) FROM retier_mark_set)
""")


async def mark(session: AsyncSession, customer_ids: Iterable[int], scope: str) -> None:
    """In an intake's transaction (which holds these customers: app.customers.locks): re-tier them in the worker's
    next batch. retier_mark has no foreign key (its check cost a trigger call per new mark): the intake holds the
    customers' rows, and a batch drops the marks of customers that are gone."""
    ids = sorted(set(customer_ids))
    if ids:
        await session.execute(_MARK, {"ids": ids, "scope": scope})


async def expand_sets(session: AsyncSession) -> int:
    """In a transaction of its own (commit it at once: the marks it writes would hold intakes that mark the same
    customers until it commits): every mark set not being expanded by another worker turned into retier_mark rows,
    and deleted. How many sets it expanded."""
    return await session.scalar(_EXPAND_SETS)


async def erase_marks(session: AsyncSession, customer_id: int) -> None:
    """Erasure (which holds the customer's lock): the customer waits for nothing any more, their id gone from the
    import's mark sets too (a set a worker is expanding is skipped: the mark it writes finds them erased, as
    below). Marks a batch has claimed are skipped, not waited for (that batch waits for this lock): the batch finds
    the customer erased once it has the lock, re-tiers nothing of theirs and deletes them."""
    await session.execute(_ERASE, {"id": customer_id})
    await session.execute(_ERASE_FROM_SETS, {"id": customer_id})


async def refresh_statistics(session: AsyncSession) -> list[str]:
    """ANALYZE the batch's tables whose statistics an intake has made stale (see STATISTICS_TABLES), unless another
    worker is doing so, with a small sample (_SMALL_SAMPLE); in the caller's transaction (commit it after). The
    tables analyzed."""
    stale = list((await session.scalars(_STALE_STATISTICS, {"tables": list(STATISTICS_TABLES)})).all())
    if stale and await session.scalar(_STATISTICS_LOCK):
        await session.execute(_SMALL_SAMPLE)
        for table in stale:  # names from the fixed list above
            await session.execute(text(f"ANALYZE {table}"))
        return stale
    return []


async def run_batch(session: AsyncSession, limit: int, after: int = 0) -> int:
    """One micro-batch in the caller's transaction (commit it after): up to `limit` marks of customers with ids
    above `after` claimed, their customers re-tiered, the marks deleted. Returns how many marks it took (0: nothing
    waiting, or all claimed by others)."""
    return (await claim_batch(session, limit, after))[0]


async def claim_batch(session: AsyncSession, limit: int, after: int = 0) -> tuple[int, int]:
    """run_batch, also returning the highest customer id claimed (the worker's next cursor)."""
    claimed = (await session.execute(_CLAIM, {"limit": limit, "after": after})).all()
    if not claimed:
        return 0, after
    ids = sorted({row.customer_id for row in claimed})
    id_range = tier_refresh.dense_range(ids)
    whole_range = False
    if id_range is not None:  # many close ids: the range locked, and evaluated as one unless a writer holds some
        locked, live, whole_range = await locks.lock_free_range(session, *id_range)
    else:
        locked, live = await locks.lock_free_customers(session, ids)
    any_ids = sorted({row.customer_id for row in claimed if row.scope == ANY} & live)
    activity_ids = sorted({row.customer_id for row in claimed if row.scope == ACTIVITY} & live - set(any_ids))
    if whole_range:
        await session.execute(_PLAN_FOR_EACH_RANGE)
    for scope_ids, changed in ((any_ids, None), (activity_ids, ACTIVITY_METRICS)):
        if scope_ids:
            scope_range = tier_refresh.dense_range(scope_ids) if whole_range else None
            await offer_state.mark_stale(session, scope_ids, changed)
            await tier_refresh.refresh_tiers(session, scope_ids, id_range=scope_range, changed=changed)
    if skipped := [i for i in ids if i not in locked]:  # held by a writer, or gone (the marks have no foreign key)
        locked |= set(ids) - set((await session.scalars(_EXISTING, {"ids": skipped})).all())
    done = [row for row in claimed if row.customer_id in locked]  # the others' marks wait for a later batch
    await session.execute(_DELETE, {"ids": [row.customer_id for row in done], "scopes": [row.scope for row in done]})
    return len(claimed), ids[-1]


async def observe_lag(session: AsyncSession) -> float:
    """The lag metric's figure now: the age of the oldest mark in seconds (and the pending count)."""
    lag, pending = (await session.execute(_LAG)).one()
    RETIER_LAG.set(float(lag))
    RETIER_PENDING.set(pending)
    return float(lag)


async def drain(sessionmaker, limit: int) -> int:
    """Run batches until none is left to claim; how many marks were taken."""
    total, after = 0, 0
    while True:
        async with sessionmaker() as session, session.begin():
            await expand_sets(session)
        async with sessionmaker() as session, session.begin():
            await refresh_statistics(session)
        async with sessionmaker() as session, session.begin():
            started = after
            taken, after = await claim_batch(session, limit, started)
        total += taken
        if taken < limit:
            if started == 0:
                return total
            after = 0  # the end of the ids: round again from the start


class RetierWorker:
    """The lifespan's worker: the lag observed, then a batch; the next at once after a full batch, otherwise after
    the interval."""

    def __init__(self, settings: Settings, sessionmaker) -> None:
        self.interval = settings.retier_interval_seconds
        self.batch_size = settings.retier_batch_size
        self.sessionmaker = sessionmaker

    async def run(self) -> None:
        after = 0  # the cursor: the next batch claims marks of customers with higher ids, then wraps round
        while True:
            taken, started = 0, after
            try:
                async with self.sessionmaker() as session:
                    if await observe_lag(session) > 0:
                        await session.commit()
                        await expand_sets(session)
                        await session.commit()
                        await refresh_statistics(session)
                        await session.commit()
                async with self.sessionmaker() as session, session.begin():
                    taken, last = await claim_batch(session, self.batch_size, started)
                after = last if taken == self.batch_size else 0
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("re-tiering batch: failed")
                after = 0
            # a full batch, or the end of a sweep that began past the start: more may wait, the next batch at once
            if taken < self.batch_size and started == 0:
                await asyncio.sleep(self.interval)
