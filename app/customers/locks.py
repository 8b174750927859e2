"""Customer locks: how writers of customers and batch chunks exclude each other (span advisory locks, then rows)."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

# Batch chunks and writers exclude each other by spans of customer ids: a chunk holds its spans' advisory locks
# exclusively, every other writer of customers shares its customers' spans (and locks their rows, which orders
# writers of the same customer). A chunk thus writes nothing to its customers' rows: locking a row writes it, and a
# run's row locks cost it much WAL (bench/HISTORY.md). Every holder of a span lock takes it before it waits for
# anything a chunk could hold.
#
# Event intake shares its customers' rows (FOR KEY SHARE) instead of locking them: intakes of the same customers
# then run side by side (they write the rollups, last_txn_at, offer-state generations and marks in customer-id
# order, with upserts, and queue only on the rows they both write), and the writers that must not race an intake
# still wait for it: erasure locks its customer FOR UPDATE, and the re-tiering batch locks its customers FOR UPDATE
# SKIP LOCKED (it skips a customer an intake holds, whose mark then stays for a later batch: app.customers.retier).
LOCK_SPAN = 50_000
_SPAN_LOCKS = 7311  # the advisory locks' namespace (app/recommendations/ranking_stats.py holds 7310)


def _spans_locked(lock: str) -> str:
    """A one-time filter that takes `lock` (shared or exclusive) on each span in :spans, in their order."""
    return f"(SELECT count({lock}({_SPAN_LOCKS}, s)) FROM unnest(CAST(:spans AS int[])) s) >= 0"


_LOCK_CUSTOMERS = text(
    "SELECT id, erased_at IS NULL AS live FROM customer WHERE id = ANY(CAST(:ids AS bigint[])) "
    f"AND {_spans_locked('pg_advisory_xact_lock_shared')} ORDER BY id FOR NO KEY UPDATE"
)
_LOCK_FREE_CUSTOMERS = text(
    "SELECT id, erased_at IS NULL AS live FROM customer WHERE id = ANY(CAST(:ids AS bigint[])) "
    f"AND {_spans_locked('pg_advisory_xact_lock_shared')} ORDER BY id FOR UPDATE SKIP LOCKED"
)
_SHARE_CUSTOMERS = text(
    "SELECT id, erased_at IS NULL AS live FROM customer WHERE id = ANY(CAST(:ids AS bigint[])) "
    f"AND {_spans_locked('pg_advisory_xact_lock_shared')} ORDER BY id FOR KEY SHARE"
)
_LOCK_FREE_RANGE = text(
    "SELECT id, erased_at IS NULL AS live FROM customer WHERE id BETWEEN :id_from AND :id_to "
    f"AND {_spans_locked('pg_advisory_xact_lock_shared')} ORDER BY id FOR UPDATE SKIP LOCKED"
)
_COUNT_RANGE = text("SELECT count(*) FROM customer WHERE id BETWEEN :id_from AND :id_to")
_LOCK_CUSTOMER_RANGE = text(
    "SELECT count(*) FILTER (WHERE live) FROM (SELECT erased_at IS NULL AS live FROM customer "
    f"WHERE id BETWEEN :id_from AND :id_to AND {_spans_locked('pg_advisory_xact_lock_shared')} "
    "ORDER BY id FOR NO KEY UPDATE) locked"
)
_SHARE_SPANS = text(f"SELECT {_spans_locked('pg_advisory_xact_lock_shared')}")
_HOLD_CHUNK = text(
    "SELECT count(*) FROM customer WHERE id BETWEEN :id_from AND :id_to AND erased_at IS NULL "
    f"AND {_spans_locked('pg_advisory_xact_lock')}"
)


def _spans(id_from: int, id_to: int) -> list[int]:
    return list(range(id_from // LOCK_SPAN, id_to // LOCK_SPAN + 1))


async def lock_customers(session: AsyncSession, customer_ids) -> set[int]:
    """Lock customers until the transaction ends: share their spans (a batch chunk over them first finishes,
    and none begins meanwhile), then lock their rows in id order, so that writers of the same customers (intake,
    tier evaluation, erasure) queue instead of deadlocking or overwriting each other's decisions. The spans are
    locked by the statement's one-time filter, before any row. Returns the ids of those not erased, as the rows
    are once locked: a writer that read its customers before waiting here learns of an erasure that committed
    meanwhile (and must then write nothing for them)."""
    ids = sorted(set(customer_ids))
    if not ids:
        return set()
    rows = await session.execute(_LOCK_CUSTOMERS, {"ids": ids, "spans": sorted({i // LOCK_SPAN for i in ids})})
    return {row.id for row in rows if row.live}


async def share_customers(session: AsyncSession, customer_ids) -> set[int]:
    """Event intake's hold on its customers until the transaction ends: their spans shared (as lock_customers),
    their rows FOR KEY SHARE in id order, which other intakes share and only erasure (FOR UPDATE) and a re-tiering
    batch (FOR UPDATE SKIP LOCKED) exclude. Returns the ids of those not erased, as the rows are once held."""
    ids = sorted(set(customer_ids))
    if not ids:
        return set()
    rows = await session.execute(_SHARE_CUSTOMERS, {"ids": ids, "spans": sorted({i // LOCK_SPAN for i in ids})})
    return {row.id for row in rows if row.live}


async def lock_free_customers(session: AsyncSession, customer_ids) -> tuple[set[int], set[int]]:
    """lock_customers (FOR UPDATE: an intake's share excludes it too) for those of these customers no other writer
    holds now (the rest are skipped, not waited for: a writer holding them keeps its lock until it commits, and a
    batch that waited for it would hold the customers it has locked so far meanwhile, which other writers then queue
    behind). Returns (the ids locked, those of them not erased); an id not locked is held by another writer, or its
    customer is gone."""
    ids = sorted(set(customer_ids))
    if not ids:
        return set(), set()
    rows = (
        await session.execute(_LOCK_FREE_CUSTOMERS, {"ids": ids, "spans": sorted({i // LOCK_SPAN for i in ids})})
    ).all()
    return {row.id for row in rows}, {row.id for row in rows if row.live}


async def lock_free_range(session: AsyncSession, id_from: int, id_to: int) -> tuple[set[int], set[int], bool]:
    """lock_free_customers for every customer with an id in [id_from, id_to]: (the ids locked, those of them not
    erased, whether none of the range was skipped: it may then be evaluated as a range)."""
    rows = (
        await session.execute(_LOCK_FREE_RANGE, {"id_from": id_from, "id_to": id_to, "spans": _spans(id_from, id_to)})
    ).all()
    total = await session.scalar(_COUNT_RANGE, {"id_from": id_from, "id_to": id_to})
    return {row.id for row in rows}, {row.id for row in rows if row.live}, len(rows) >= total


async def lock_customer_range(session: AsyncSession, id_from: int, id_to: int) -> int:
    """lock_customers for every customer with an id in [id_from, id_to] (an import evaluated as a range); returns
    how many of them are not erased."""
    return await session.scalar(
        _LOCK_CUSTOMER_RANGE, {"id_from": id_from, "id_to": id_to, "spans": _spans(id_from, id_to)}
    )


async def share_spans(session: AsyncSession, customer_ids) -> None:
    """The span half of lock_customers, for a writer whose statement has itself locked its customers' rows (an
    import's upsert: a row it updated is locked, a row it inserted is its own until commit): their spans shared
    until the transaction ends, so that no batch chunk over them runs meanwhile."""
    if spans := sorted({i // LOCK_SPAN for i in customer_ids}):
        await session.execute(_SHARE_SPANS, {"spans": spans})


def share_spans_sql(written: str) -> str:
    """SQL of share_spans for the customers a statement's `written` CTE returns (its `id` column): a query giving
    how many spans it shared, for a statement that writes and then shares its customers' spans (the NDJSON import's
    merge: app.customers.customer_import)."""
    return (
        f"SELECT count(pg_advisory_xact_lock_shared({_SPAN_LOCKS}, s)) FROM "
        f"(SELECT DISTINCT (id / {LOCK_SPAN})::int AS s FROM {written} ORDER BY 1) spans"
    )


async def hold_chunk(session: AsyncSession, id_from: int, id_to: int) -> int:
    """A batch chunk's lock on the customers with ids in [id_from, id_to]: their spans, exclusively, until the
    transaction ends (writers of those customers wait for it; it waits for those already writing). Returns how
    many of them are not erased."""
    return await session.scalar(_HOLD_CHUNK, {"id_from": id_from, "id_to": id_to, "spans": _spans(id_from, id_to)})
