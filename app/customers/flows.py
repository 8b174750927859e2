"""What a write to customers' data sets off, in the writing transaction; routers call these, and services do not
reach into other domains for them. After the write itself (app.customers.service, or the feedback domain's
conversions, surveys and complaints), `customers_changed` runs, in this order:

1. the customers are locked against batch chunks and other writers (app.customers.locks);
2. their offer states are marked stale (app.recommendations.offer_state, where that contract is stated);
3. their tiers are evaluated again under the active policies that read what the write can have moved
   (app.tiering.assignment.refresh).

Erasure is a flow of its own: what each domain keeps of the customer goes.
"""

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit import service as audit_service
from app.benefits.uses import erase_uses
from app.customers import customer_import, import_queries, locks, retier, service
from app.customers import events as customer_events
from app.customers.schemas import CustomerPatch, CustomerUpsert, HoldingIn
from app.engagement.service import erase_customer_engagement
from app.feedback import service as feedback_service
from app.managers.service import erase_customer_managers
from app.products import quotas
from app.recommendations import offer_state
from app.recommendations.served import erase_served_reasons
from app.tiering.assignment import refresh as tier_refresh
from app.webhooks import outbox

# Plan each statement for the range it is given: a cached generic plan cannot see it and may nest-loop over the
# whole table.
_PLAN_FOR_EACH_RANGE = sa.text("SET LOCAL plan_cache_mode = force_custom_plan")


async def customers_changed(
    session: AsyncSession, customer_ids: Iterable[int], changed: frozenset[str] | None = None
) -> None:
    """The side effects of a write to these customers' data, in its transaction. `changed`: the attributes the
    write can have moved (service.HOLDING_METRICS, ...); None: any."""
    ids = sorted(set(customer_ids))
    if not ids:
        return
    id_range = await _lock(session, ids)
    await _after_write(session, ids, id_range, changed)


async def _lock(session: AsyncSession, ids: list[int]) -> tuple[int, int] | None:
    """Step 1 for these customers (`ids` sorted and distinct); their dense range, if they are evaluated as one."""
    id_range = tier_refresh.dense_range(ids)
    if id_range is not None:
        await session.execute(_PLAN_FOR_EACH_RANGE)
        await locks.lock_customer_range(session, *id_range)
    else:
        await locks.lock_customers(session, ids)
    return id_range


async def _after_write(
    session: AsyncSession, ids: list[int], id_range: tuple[int, int] | None, changed: frozenset[str] | None
) -> None:
    """Steps 2 and 3."""
    await offer_state.mark_stale(session, ids, changed)
    await tier_refresh.refresh_tiers(session, ids, id_range=id_range, changed=changed)


async def upsert_customer(session: AsyncSession, external_id: str, body: CustomerUpsert) -> bool:
    """Create or replace a profile; True when it was created."""
    customer_id, created = await service.upsert_customer(session, external_id, body)
    await customers_changed(session, [customer_id])
    return created


async def patch_customer(session: AsyncSession, external_id: str, body: CustomerPatch) -> None:
    await customers_changed(session, [await service.patch_customer(session, external_id, body)])


async def import_customers(session: AsyncSession, lines: list[tuple[int, bytes]]) -> tuple[int, int, int, list[dict]]:
    """Validate and upsert an NDJSON import's non-blank lines (app.customers.customer_import): (accepted, created,
    updated, rejections). The upsert has locked the rows of the customers it wrote; their spans are shared after it
    by the merge statement itself (app.customers.locks.share_spans_sql), which also marks them all for the
    re-tiering worker's next batches (app.customers.retier), not re-tiered in the request; the offer states of those
    it updated are marked stale here (one it created has none, and nothing can have read it before this transaction
    commits)."""
    accepted, created, updated, rejections, updated_ids = await customer_import.import_lines(session, lines)
    if updated_ids:
        await offer_state.mark_stale(session, sorted(updated_ids))
    return accepted, created, updated, rejections


async def replace_holdings(session: AsyncSession, external_id: str, holdings: list[HoldingIn]) -> list:
    """Replace the customer's product set; the holdings as stored. A product newly held is a conversion, counted
    against its quota (app.products.quotas)."""
    customer_id, opened, rows = await service.replace_holdings(session, external_id, holdings)
    await customers_changed(session, [customer_id], changed=service.HOLDING_METRICS)
    await quotas.record_conversions(
        session, [quotas.Conversion(h.product_code, customer_id, "holding", h.balance) for h in opened]
    )
    return rows


async def import_holdings_chunk(session: AsyncSession, import_id: int, id_from: int, id_to: int) -> int:
    """One chunk of a holdings import (app.customers.holdings_import), in its own transaction: its customers (ids
    in [id_from, id_to] with staged lines) locked first, then their holdings merged as replace_holdings does for one,
    then the rest of customers_changed, set-based; products newly held count against their quotas (a chunk merged
    again finds them held). Returns how many customers it merged."""
    await session.execute(import_queries.HOLD_CHUNK, {"name": f"{import_id}:{id_from}"})
    ids = (
        await session.scalars(
            import_queries.STAGED_CUSTOMERS, {"import_id": import_id, "id_from": id_from, "id_to": id_to}
        )
    ).all()
    if not ids:
        return 0
    id_range = await _lock(session, list(ids))
    opened = await import_queries.merge_chunk(session, import_id, id_from, id_to)
    await _after_write(session, list(ids), id_range, service.HOLDING_METRICS)
    await quotas.record_conversions(session, [quotas.Conversion(*line, "holding", amount) for *line, amount in opened])
    return len(ids)


async def ingest_events(session: AsyncSession, events: list, body: str | None = None) -> int:
    """Store a batch of events for many customers (app.customers.events: in one statement, with their offer states
    marked stale and their customers marked for the re-tiering worker); how many were new. body: the request's JSON,
    which `events` were validated from, if any (the statement reads the events from it)."""
    return await customer_events.ingest(session, events, body)


async def erase_customer(session: AsyncSession, external_id: str, secret: str, actor: str) -> None:
    """Right to erasure, in every domain that keeps something of the customer's (idempotent), in one transaction.

    Goes: the profile's personal fields (name, birth date, custom attributes, risk, consent; the onboarding date
    is cut to its year), the external id (the row's becomes random; customer_erasure keeps a keyed hash of it only
    so that erasing it again answers 204), holdings, balances and events with their rollups, the facts of tier
    assignments, the reasons of served recommendations, survey comments, complaint descriptions (redacted) and
    transition notes, benefit uses, community memberships and activity, activity participations, referrals made
    (and the referee's name on others' referrals), and the external id in webhook events. Client event ids of
    feedback, surveys and complaints become keyed hashes (a retry for the erased customer is refused as an unknown
    customer anyway). Their relationship manager goes, and the notes of contacts and reasons of reassignments.
    Kept, anonymous, for reports and legal retention: the customer row (segment, onboarding year, dates), survey
    scores, and each complaint's record (category, channel, status history with actors, dates), so that the
    bank can show how a complaint was handled without holding what the customer wrote.
    Audited as customer.erase by the internal id and the calling key (`actor`), never by the external id; a
    repeated erasure changes nothing and is not audited again."""
    customer_id = await service.erase_customer(session, external_id, secret)
    if customer_id is None:  # erased before
        return
    await service.erase_import_lines(session, customer_id, external_id)  # staged balances of theirs
    await retier.erase_marks(session, customer_id)  # nothing of theirs waits to be re-tiered
    await tier_refresh.erase_assignments(session, customer_id)  # their facts hold the customer's values
    await erase_served_reasons(session, customer_id)  # the reasons quote them
    await offer_state.mark_stale(session, [customer_id])  # its explanation quotes them
    await feedback_service.erase_customer_words(session, customer_id, secret)  # what they wrote, their event ids
    await erase_uses(session, customer_id)  # what, where and when the customer took benefits
    await erase_customer_engagement(session, customer_id)  # who took part in which programme
    await erase_customer_managers(session, customer_id)  # their manager, contact notes, reassignment reasons
    await outbox.erase_customer(session, customer_id)  # the events name them
    await quotas.erase_customer(session, customer_id)  # the amounts of their conversions
    await audit_service.record(
        session, actor, "customer.erase", "customer", customer_id, {"erased": False}, {"erased": True}
    )
