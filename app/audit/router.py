"""GET /v1/audit: the audit log of admin writes, newest first (admin only)."""

from typing import Annotated

from fastapi import APIRouter, Query

from app.audit import service
from app.audit.schemas import AuditEventRead
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.pagination import CursorParam, LimitParam, Page, decode_cursor, encode_cursor
from app.core.security import Scope, require_scope
from app.core.strict import Timestamp

router = APIRouter(
    prefix="/v1/audit", tags=["audit"], dependencies=[require_scope(Scope.ADMIN)], responses=problem_responses(401, 403)
)

NO_NUL = r"^[^\x00]*$"  # Postgres text cannot hold NUL: the filters say so rather than refuse it unannounced
Name = Annotated[str | None, Query(max_length=100, pattern=NO_NUL)]


@router.get("", summary="List audit events", response_model=Page[AuditEventRead], responses=problem_responses(422))
async def list_audit_events(
    session: SessionDep,
    action: Annotated[str | None, Query(max_length=40, pattern=NO_NUL, description="e.g. `policy.activate`.")] = None,
    entity: Annotated[
        str | None,
        Query(
            alias="entity_type", max_length=40, pattern=NO_NUL, description="policy, product, api_key, tier_override."
        ),
    ] = None,
    entity_key: Annotated[
        str | None, Query(max_length=200, pattern=NO_NUL, description="A product code, policy key, key id.")
    ] = None,
    actor: Name = None,
    from_: Annotated[Timestamp | None, Query(alias="from", description="Events at or after this time.")] = None,
    to: Annotated[Timestamp | None, Query(description="Events before this time.")] = None,
    cursor: CursorParam = None,
    limit: LimitParam = 50,
) -> Page[AuditEventRead]:
    """Who changed policies, products, keys and tier overrides, when, with the state before and after.

    Newest first; follow `next_cursor` for older events. Snapshots never hold keys or personal data.
    """
    rows = await service.list_events(
        session,
        action=action,
        entity=entity,
        entity_key=entity_key,
        actor=actor,
        since=from_,
        until=to,
        before_id=decode_cursor(cursor),
        limit=limit,
    )
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return Page[AuditEventRead](items=[AuditEventRead.model_validate(r) for r in rows[:limit]], next_cursor=next_cursor)
