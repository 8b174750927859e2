"""Tier refresh on write: the active policies evaluated again for the customers a write touched, in its
transaction; and overrides past their expiry cleared into the feed."""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.metrics import TIER_TRANSITIONS, count_on_commit
from app.core.tracing import current_traceparent
from app.rules import load_catalog
from app.tiering.assignment import staged
from app.tiering.assignment.compile import AssignmentCounts, active_versions, assign, compile_version
from app.tiering.models import TierAssignment
from app.webhooks import outbox

# A dense range's staged features are joined to its stored assignments by hash: planned for what the statistics say,
# the join nest-looped over a scan of tier_assignment, which they said empty on the first night while the earlier
# policies' statements of the same transaction had filled it (25 s instead of 0.5 s for a chunk of 50,000;
# bench/RESULTS.md, feed20d). Scattered ids keep nested loops: a hash join would read their whole id span.
_NESTED_LOOPS = sa.text("SELECT current_setting('enable_nestloop')")
_SET_NESTED_LOOPS = sa.text("SELECT set_config('enable_nestloop', :value, true)")


def dense_range(ids: Sequence[int]) -> tuple[int, int] | None:
    """Many customers with close ids (an import; `ids` sorted and distinct) are locked and evaluated as their id
    range, like a chunk of a batch run: that range. None for scattered ones (an intake batch): by id."""
    return (ids[0], ids[-1]) if len(ids) > 100 and ids[-1] - ids[0] < 2 * len(ids) else None


async def refresh_tiers(
    session: AsyncSession,
    ids: Sequence[int],
    *,
    id_range: tuple[int, int] | None,
    now: datetime | None = None,
    policy_ids: Sequence[int] | None = None,
    changed: frozenset[str] | None = None,
) -> AssignmentCounts:
    """Re-evaluate every active policy for these customers (`ids` sorted and distinct, `id_range` their
    dense_range), in the caller's transaction, which has locked them (app.customers.flows): a write to a customer
    and its new tier commit together, so the app never reads a stale tier after a deposit. With `changed` (the
    attributes a write can have moved), only the policies reading one of them are evaluated."""
    totals = AssignmentCounts()
    if not ids:
        return totals
    now = now or await session.scalar(select(func.now()))
    scope = "range" if id_range else "ids"
    pairs = await active_versions(session, policy_ids)
    catalog = await load_catalog(session) if pairs else None
    pairs = [pair for pair in pairs if changed is None or compile_version(*pair, catalog, scope).attributes & changed]
    if len(pairs) > 1 and len(ids) >= staged.MIN_CUSTOMERS:  # the features computed once, for every policy
        await staged.stage(session, ids, id_range)
        scope = "staged"
    versions = [compile_version(*pair, catalog, scope) for pair in pairs]  # compiled once per scope (cached)
    hash_joins = id_range is not None and any(compiled.scope == "staged" for compiled in versions)
    nested_loops = await session.scalar(_NESTED_LOOPS) if hash_joins else None
    for compiled in versions:
        if compiled.scope == "staged":
            if hash_joins:
                await session.execute(_SET_NESTED_LOOPS, {"value": "off"})
            totals.add(await assign(session, compiled, now, id_range=(ids[0], ids[-1])))
            if hash_joins:
                await session.execute(_SET_NESTED_LOOPS, {"value": nested_loops})
        elif id_range:
            totals.add(await assign(session, compiled, now, id_range=id_range))
        else:
            totals.add(await assign(session, compiled, now, customer_ids=ids))
        if id_range:
            await expire_overrides(session, compiled.policy_id, now, *id_range)
        else:
            await expire_overrides(session, compiled.policy_id, now, ids[0], ids[-1], ids)
    count_transitions(session, totals)
    return totals


def count_transitions(session: AsyncSession, counts: AssignmentCounts) -> None:
    """The transitions metric, counted when the caller's transaction commits."""
    for direction, amount in (
        ("upgrade", counts.upgrades),
        ("downgrade", counts.downgrades),
        ("initial", counts.initial),
    ):
        count_on_commit(session, TIER_TRANSITIONS.labels(direction), amount)


async def erase_assignments(session: AsyncSession, customer_id: int) -> None:
    """Erasure: the customer's assignments go (their facts hold the customer's values); the feed keeps its moves."""
    await session.execute(delete(TierAssignment).where(TierAssignment.customer_id == customer_id))


_EXPIRE_OVERRIDES = sa.text(f"""
WITH expired AS (
    SELECT customer_id, override_code, override_rank, tier_code, tier_rank, version_id FROM tier_assignment
    WHERE policy_id = :policy_id AND override_code IS NOT NULL AND override_expires_at <= :now
      AND customer_id BETWEEN :id_from AND :id_to
      AND (CAST(:customer_ids AS bigint[]) IS NULL OR customer_id = ANY(CAST(:customer_ids AS bigint[])))
    ORDER BY customer_id FOR UPDATE
), cleared AS (
    UPDATE tier_assignment a SET override_code = NULL, override_rank = NULL, override_reason = NULL,
                                 override_actor = NULL, override_expires_at = NULL
    FROM expired e WHERE a.customer_id = e.customer_id AND a.policy_id = :policy_id
    RETURNING a.customer_id
), events AS (
    {outbox.INSERT_TRACED_SQL}
    SELECT CASE WHEN e.tier_rank > e.override_rank THEN 'tier.upgraded' ELSE 'tier.downgraded' END, e.customer_id,
           jsonb_build_object('customer_id', c.external_id, 'policy_key', p.key, 'from_tier', e.override_code,
                              'to_tier', e.tier_code, 'reason', 'override_expired', 'at', CAST(:now AS timestamptz)),
           CAST(:traceparent AS varchar)
    FROM expired e JOIN customer c ON c.id = e.customer_id JOIN tier_policy p ON p.id = :policy_id
    WHERE e.tier_rank <> e.override_rank ORDER BY e.customer_id
)
INSERT INTO tier_transition (customer_id, policy_id, version_id, from_code, to_code, direction, reason, at)
SELECT customer_id, :policy_id, version_id, override_code, tier_code,
       CASE WHEN tier_rank > override_rank THEN 'upgrade' WHEN tier_rank < override_rank THEN 'downgrade'
            ELSE 'lateral' END, 'override_expired', :now
FROM expired WHERE override_code <> tier_code
""")


async def expire_overrides(
    session: AsyncSession,
    policy_id: int,
    now: datetime,
    id_from: int,
    id_to: int,
    customer_ids: Sequence[int] | None = None,
) -> None:
    """Clear overrides past their expiry (of customers with ids in [id_from, id_to], or only `customer_ids` of
    them) and note each in the feed, with its webhook event when the tier the customer has moves up or down.
    Reads already ignore an expired override; this tidies rows for the feed."""
    await session.execute(
        _EXPIRE_OVERRIDES,
        {
            "policy_id": policy_id,
            "now": now,
            "id_from": id_from,
            "id_to": id_to,
            "customer_ids": customer_ids,
            "traceparent": current_traceparent(),
        },
    )
