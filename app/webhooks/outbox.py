"""The transactional outbox: an event is a row written in the transaction of the change it reports, so it commits
with the change or not at all (no event lost, none sent for a rolled-back change). The delivery worker
(app/webhooks/delivery.py) fans committed events out to subscriptions and sends them.

One change, one event (in a service, after the write; the caller's transaction, no commit):

    await outbox.emit(session, "complaint.status_changed",
                      {"complaint_id": 7, "customer_id": "C1", ...}, customer_id=customer.id)

Events of one customer (`customer_id`, the internal customer.id) reach each subscriber in the order they were
emitted; emit after the write that locks the entity, so that order is the order the changes committed in.

Many changes in one statement (set-based, no Python per row): `emit_from(select)` is an INSERT ... SELECT of
events from any SELECT whose columns are, in order, the event type, the customer id and the payload (jsonb; build
it with `json_object`). Run it on its own, or make it a CTE of the statement that makes the changes (Postgres runs
every data-modifying CTE, but SQLAlchemy renders only CTEs the statement refers to, so refer to it, e.g. count it;
a CTE is read only through its RETURNING). The assignment statement (app/tiering/assignment/compile.py) does this:

    events = outbox.emit_from(
        select(case((changes.c.direction == "upgrade", "tier.upgraded"), else_="tier.downgraded"),
               changes.c.customer_id,
               outbox.json_object(customer_id=changes.c.external_id, policy_key=literal(key),
                                  from_tier=changes.c.from_code, to_tier=changes.c.to_code,
                                  reason=changes.c.reason, at=changes.c.at))
        .where(changes.c.direction.in_(["upgrade", "downgrade"]))).returning(WebhookEvent.id).cte("events")
    statement = select(..., select(func.count()).select_from(events).scalar_subquery().label("events"))

Statements written as text use INSERT_SQL the same way: f"events AS ({INSERT_SQL} SELECT ... FROM moved)".
The set-based form does not check types and payloads in Python: use the catalogue's names (app/webhooks/events.py)
and build the payload its schema describes; a test of the emitting domain should read one event back.
"""

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from pydantic import BaseModel
from sqlalchemy import String, func, insert, literal, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement, Select

from app.core.tracing import current_traceparent
from app.webhooks.events import EVENT_TYPES
from app.webhooks.models import WebhookEvent

_TABLE = WebhookEvent.__table__
INSERT_SQL = "INSERT INTO webhook_event (event_type, customer_id, payload)"
"""The head of the set-based form for statements written as text: follow it with SELECT type, customer id, payload.
INSERT_TRACED_SQL adds the traceparent column: follow it with SELECT type, customer id, payload, traceparent (bind
it to current_traceparent())."""
INSERT_TRACED_SQL = "INSERT INTO webhook_event (event_type, customer_id, payload, traceparent)"


async def emit(
    session: AsyncSession, event_type: str, payload: Mapping[str, Any] | BaseModel, *, customer_id: int | None = None
) -> UUID:
    """Add one event to the caller's transaction; returns its event id (what receivers de-duplicate on).
    ValueError for an event type not in the catalogue; pydantic's ValidationError for a payload its schema refuses
    (both are programming errors, not input errors)."""
    kind = EVENT_TYPES.get(event_type)
    if kind is None:
        raise ValueError(f"unknown webhook event type {event_type!r}: add it to app/webhooks/events.py")
    data = kind.payload.model_validate(payload.model_dump() if isinstance(payload, BaseModel) else payload)
    return await session.scalar(
        insert(_TABLE)
        .values(
            event_type=event_type,
            customer_id=customer_id,
            payload=data.model_dump(mode="json"),
            traceparent=current_traceparent(),
        )
        .returning(_TABLE.c.event_id)
    )


async def erase_customer(session: AsyncSession, customer_id: int) -> None:
    """The outbox's part of an erasure: the customer's events (sent or still to send) name the erased row's
    external id (random, app.customers.service.erased_external_id) instead of the bank's. Call it after the
    customer row is erased, in the same transaction."""
    await session.execute(
        text(
            "UPDATE webhook_event e SET payload = jsonb_set(e.payload, '{customer_id}', to_jsonb(c.external_id)) "
            "FROM customer c WHERE c.id = :id AND c.erased_at IS NOT NULL AND e.customer_id = c.id "
            "AND e.payload ? 'customer_id'"
        ),
        {"id": customer_id},
    )


def emit_from(select: Select, traceparent: ColumnElement | None = None):
    """INSERT INTO webhook_event (event_type, customer_id, payload, traceparent) <select>: the events of a set of
    changes, with the trace context of the work under way (app/core/tracing.py). A statement built once and run
    many times (a compiled one) passes `traceparent` as a bind parameter and gives its value on each execution."""
    if traceparent is None:
        traceparent = literal(current_traceparent(), String(55))
    return insert(_TABLE).from_select(
        ["event_type", "customer_id", "payload", "traceparent"], select.add_columns(traceparent)
    )


def json_object(**fields: ColumnElement | Any) -> ColumnElement:
    """jsonb_build_object of named SQL expressions (plain values are bound): a payload built in SQL."""
    arguments = []
    for name, value in fields.items():
        arguments += [literal(name), value if isinstance(value, ColumnElement) else literal(value)]
    return func.jsonb_build_object(*arguments)
