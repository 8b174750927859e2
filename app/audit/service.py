"""Recording and reading audit events. `record` joins the caller's transaction: the audit row commits or
rolls back with the write it describes. Callers pass snapshots that hold no secrets and no personal data."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.models import AuditEvent


async def record(
    session: AsyncSession,
    actor: str,
    action: str,
    entity: str,
    key: str | int,
    before: dict[str, Any] | None,
    after: dict[str, Any] | None,
) -> AuditEvent:
    """Add one audit event (e.g. action "product.update", entity "product", key "td-12m") to the session."""
    event = AuditEvent(actor=actor, action=action, entity_type=entity, entity_key=str(key), before=before, after=after)
    session.add(event)
    await session.flush()
    return event


async def record_change(
    session: AsyncSession,
    request,
    action: str,
    entity: str,
    key: str | int,
    before: BaseModel | dict[str, Any] | None,
    after: BaseModel | dict[str, Any] | None,
) -> AuditEvent:
    """The audit event of an admin write by the calling API key: `before` and `after` are the documents the API
    shows (as JSON) or snapshots already made, None where there is none (created, deleted)."""
    return await record(session, request.state.principal.name, action, entity, key, _snapshot(before), _snapshot(after))


def _snapshot(document: BaseModel | dict[str, Any] | None) -> dict[str, Any] | None:
    return document.model_dump(mode="json") if isinstance(document, BaseModel) else document


def created(action: str, entity: str, key: str):
    """The audit of a creating POST, for `@creates(..., audit=created("benefit.create", "benefit", "code"))`
    (app/core/idempotency.py): the response body is the record's `after`, its field `key` the entity's key, and the
    calling API key's name the actor."""

    async def record_created(session: AsyncSession, request, body: dict[str, Any]) -> None:
        await record(session, request.state.principal.name, action, entity, body[key], None, body)

    return record_created


async def list_events(
    session: AsyncSession,
    *,
    action: str | None = None,
    entity: str | None = None,
    entity_key: str | None = None,
    actor: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    before_id: int | None = None,
    limit: int,
) -> list[AuditEvent]:
    """Events newest first, filtered; `before_id` continues a page (ids only grow)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit + 1)
    if action is not None:
        query = query.where(AuditEvent.action == action)
    if entity is not None:
        query = query.where(AuditEvent.entity_type == entity)
    if entity_key is not None:
        query = query.where(AuditEvent.entity_key == entity_key)
    if actor is not None:
        query = query.where(AuditEvent.actor == actor)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    if until is not None:
        query = query.where(AuditEvent.at < until)
    if before_id is not None:
        query = query.where(AuditEvent.id < before_id)
    return list((await session.scalars(query)).all())
