"""What communities and activities share, written once: the programme document (get, create with its audience
checked, list, change) and the invite flow (the customers found, screened by app/engagement/audience.py, the
admitted invited by the programme's own statement, each customer's outcome in the order given). communities.py and
activities.py keep only what differs: memberships, RSVPs with their waiting list, attendance. Flush, never commit."""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import TextClause, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import unique_or_raise
from app.core.errors import Conflict, InvalidInput, NotFound
from app.customers.models import Customer
from app.engagement import audience as audience_check
from app.engagement.models import Activity, ActivityParticipation, Community, CommunityMembership
from app.engagement.schemas.common import AudienceFields

_KEY_TAKEN = {"location": "body", "pointer": "/key", "detail": "in use"}


@dataclass(frozen=True)
class ProgrammeKind:
    """A kind of programme: its table, its name (in errors and in contact-policy targets `<name>:<id>`), its
    not-found error, and the table of who takes part (a row per customer, its programme in `<name>_id`)."""

    model: type[Community] | type[Activity]
    name: str
    not_found: Callable[[str], NotFound]
    taking_part: type[CommunityMembership] | type[ActivityParticipation]

    def target(self, programme_id: int) -> str:
        """The programme as the contact policy names it (rules of scope `product` count per target)."""
        return f"{self.name}:{programme_id}"


async def get(session: AsyncSession, kind: ProgrammeKind, key: str, *, lock: bool = False):
    query = select(kind.model).where(kind.model.key == key)
    programme = await session.scalar(query.with_for_update() if lock else query)
    if programme is None:
        raise kind.not_found(key)
    return programme


async def create(
    session: AsyncSession,
    kind: ProgrammeKind,
    body: AudienceFields,
    check: Callable[[], Awaitable[None]] | None = None,
):
    """A new programme from its create body, after its audience (and `check`, the kind's own) is checked; a key in
    use is a 409."""
    taken = Conflict(f"{kind.name} '{body.key}' exists", errors=[_KEY_TAKEN])
    if await session.scalar(select(kind.model.id).where(kind.model.key == body.key)) is not None:
        raise taken
    values = body.model_dump(exclude={"audience"})
    values["audience"] = await audience_check.checked_audience(
        session, body.audience, body.audience_policy_key, body.audience_tiers
    )
    if check is not None:
        await check()
    programme = kind.model(**values)
    async with unique_or_raise(session, taken):  # another creation of the key may commit between check and insert
        session.add(programme)
        await session.flush()
    await session.refresh(programme)
    return programme


def refuse_nulls(changes: dict[str, Any], names) -> None:
    """A PATCH may leave a field out, not null it: 422 at the first of `names` sent as null."""
    for name in names:
        if name in changes and changes[name] is None:
            raise InvalidInput(f"/{name}", "must not be null")


async def apply_changes(session: AsyncSession, programme, changes: dict[str, Any]):
    """Write checked changes to the programme, with its update time."""
    for name, value in changes.items():
        setattr(programme, name, value)
    programme.updated_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(programme)
    return programme


async def list_page(
    session: AsyncSession, kind: ProgrammeKind, column: str, value: str | None, after: int | None, limit: int
) -> list:
    """Programmes in creation order (one more than `limit`, for the page), optionally where `column` is `value`."""
    query = select(kind.model)
    if value is not None:
        query = query.where(getattr(kind.model, column) == value)
    if after is not None:
        query = query.where(kind.model.id > after)
    return list((await session.scalars(query.order_by(kind.model.id).limit(limit + 1))).all())


async def list_taking_part(
    session: AsyncSession, kind: ProgrammeKind, programme, state: str | None, after: int | None, limit: int
) -> list:
    """(row, customer's external id) of who takes part in the programme, in the order invited (one more than
    `limit`, for the page), optionally in one state."""
    rows = kind.taking_part
    query = (
        select(rows, Customer.external_id)
        .join(Customer, Customer.id == rows.customer_id)
        .where(getattr(rows, f"{kind.name}_id") == programme.id)
    )
    if state is not None:
        query = query.where(rows.state == state)
    if after is not None:
        query = query.where(rows.id > after)
    return list((await session.execute(query.order_by(rows.id).limit(limit + 1))).all())


async def customer_ids(session: AsyncSession, external_ids: list[str]) -> dict[str, int]:
    """The ids of the customers named (erased ones are unknown)."""
    rows = await session.execute(
        select(Customer.external_id, Customer.id).where(
            Customer.external_id.in_(external_ids), Customer.erased_at.is_(None)
        )
    )
    return dict(rows.all())


async def invite(
    session: AsyncSession,
    kind: ProgrammeKind,
    programme,
    external_ids: list[str],
    channel: str,
    statement: TextClause,
) -> list[dict[str, Any]]:
    """Invite the customers the audience admits, who consent and whom the contact policy does not suppress; each
    customer's outcome, in the order given. `statement` invites the admitted (:programme_id, :ids, :channel, :now,
    :key) and returns the ids of those it invited (not those invited already)."""
    ids = await customer_ids(session, list(dict.fromkeys(external_ids)))
    screening = await audience_check.screen(
        session,
        audience_check.Audience(programme.audience, programme.audience_policy_key, programme.audience_tiers),
        sorted(ids.values()),
        kind.target(programme.id),
    )
    admitted = sorted(cid for cid, (outcome, _) in screening.items() if outcome == "ok")
    params = {"programme_id": programme.id, "ids": admitted, "channel": channel, "now": datetime.now(UTC)}
    invited = set((await session.scalars(statement, {**params, "key": programme.key})).all())
    results = []
    for external_id in external_ids:
        customer_id = ids.get(external_id)
        if customer_id is None:
            results.append({"customer_id": external_id, "outcome": "unknown_customer"})
            continue
        outcome, rule = screening[customer_id]
        if outcome == "ok":
            outcome = "invited" if customer_id in invited else "already_invited"
            invited.discard(customer_id)  # a repeated id in the batch: invited once
        results.append({"customer_id": external_id, "outcome": outcome, "contact_rule": rule})
    return results
