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

from app.customers import locks, service
from app.customers.schemas import CustomerImportLine, CustomerPatch, CustomerUpsert, HoldingIn
from app.engagement.service import erase_customer_engagement
from app.recommendations import offer_state
from app.recommendations.served import erase_served_reasons
from app.tiering.assignment import refresh as tier_refresh

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
    id_range = tier_refresh.dense_range(ids)
    if id_range is not None:
        await session.execute(_PLAN_FOR_EACH_RANGE)
        await locks.lock_customer_range(session, *id_range)
    else:
        await locks.lock_customers(session, ids)
    await offer_state.mark_stale(session, ids, changed)
    await tier_refresh.refresh_tiers(session, ids, id_range=id_range, changed=changed)


async def upsert_customer(session: AsyncSession, external_id: str, body: CustomerUpsert) -> bool:
    """Create or replace a profile; True when it was created."""
    customer_id, created = await service.upsert_customer(session, external_id, body)
    await customers_changed(session, [customer_id])
    return created


async def patch_customer(session: AsyncSession, external_id: str, body: CustomerPatch) -> None:
    await customers_changed(session, [await service.patch_customer(session, external_id, body)])


async def import_customers(
    session: AsyncSession, lines: list[tuple[int, CustomerImportLine]]
) -> tuple[int, int, list[dict]]:
    """Upsert validated import lines: (created, updated, rejections of attribute checks)."""
    created, updated, rejections, ids = await service.import_customers(session, lines)
    await customers_changed(session, ids)
    return created, updated, rejections


async def replace_holdings(session: AsyncSession, external_id: str, holdings: list[HoldingIn]) -> list:
    """Replace the customer's product set; the holdings as stored."""
    customer_id, rows = await service.replace_holdings(session, external_id, holdings)
    await customers_changed(session, [customer_id], changed=service.HOLDING_METRICS)
    return rows


async def ingest_events(session: AsyncSession, events: list) -> int:
    """Store a batch of events for many customers; how many were new."""
    recorded, customer_ids = await service.ingest_events(session, events)
    await customers_changed(session, customer_ids, changed=service.ACTIVITY_METRICS)
    return recorded


async def erase_customer(session: AsyncSession, external_id: str, secret: str) -> None:
    """Right to erasure, in every domain that keeps something of the customer's (idempotent)."""
    customer_id = await service.erase_customer(session, external_id, secret)
    if customer_id is None:  # erased before
        return
    await tier_refresh.erase_assignments(session, customer_id)  # their facts hold the customer's values
    await erase_served_reasons(session, customer_id)  # the reasons quote them
    await offer_state.mark_stale(session, [customer_id])  # its explanation quotes them
    await erase_customer_engagement(session, customer_id)  # who took part in which programme
