"""HTTP routes for API keys (admin only)."""

from typing import Annotated

from fastapi import APIRouter, Path, Request

from app.apikeys import service
from app.apikeys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyRead
from app.audit import service as audit_service
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.idempotency import creates
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.strict import BIGINT_MAX, ParamInteger, QueryBoolean

router = APIRouter(
    prefix="/v1/api-keys",
    tags=["api-keys"],
    dependencies=[require_scope(Scope.ADMIN)],
    responses=problem_responses(401, 403),
)

KeyIdPath = Annotated[ParamInteger(1, BIGINT_MAX), Path(description="The key's id.", examples=[3])]


@creates(
    router,
    "",
    summary="Create an API key",
    location="/v1/api-keys/{id}",
    response_model=ApiKeyCreated,
    responses=problem_responses(422),
)
async def create_api_key(body: ApiKeyCreate, session: SessionDep, request: Request) -> ApiKeyCreated:
    """Create a key for a calling system. The key is in this response only; store it in a secret manager."""
    row, key = await service.create_api_key(session, body.name, body.role, request.app.state.settings.api_key_pepper)
    await audit_service.record(
        session, request.state.principal.name, "api_key.create", "api_key", row.id, None, _audit_snapshot(row)
    )
    return ApiKeyCreated(**_read(row, request).model_dump(), key=key)


@router.get("", summary="List API keys", response_model=Page[ApiKeyRead], responses=problem_responses(422))
async def list_api_keys(
    session: SessionDep, request: Request, page: PageParams, include_revoked: QueryBoolean = False
) -> Page[ApiKeyRead]:
    """Every key's name, role and scopes, in creation order (follow `next_cursor`); never the key or its hash."""
    rows = await service.list_api_keys(session, include_revoked, page)
    return Page[ApiKeyRead].of(rows, page, lambda row: _read(row, request))


@router.get("/{key_id}", summary="Get an API key", response_model=ApiKeyRead, responses=problem_responses(404))
async def get_api_key(key_id: KeyIdPath, session: SessionDep, request: Request) -> ApiKeyRead:
    """One key's name, role and scopes (revoked or not); never the key or its hash."""
    return _read(await service.get_api_key(session, key_id), request)


@router.delete("/{key_id}", summary="Revoke an API key", response_model=ApiKeyRead, responses=problem_responses(404))
async def revoke_api_key(key_id: KeyIdPath, session: SessionDep, request: Request) -> ApiKeyRead:
    """Revoke a key. It stops working at once on this instance and, told by a NOTIFY on commit, within moments on
    every other one (within `TIERWISE_API_KEY_CACHE_SECONDS`, default 5, should an instance not be listening)."""
    row = await service.revoke_api_key(session, key_id)
    request.app.state.principal_cache.clear()
    await audit_service.record(
        session,
        request.state.principal.name,
        "api_key.revoke",
        "api_key",
        row.id,
        {**_audit_snapshot(row), "revoked": False},
        {**_audit_snapshot(row), "revoked": True},
    )
    return _read(row, request)


def _read(row, request: Request) -> ApiKeyRead:
    """A key as shown: its scopes are its role's, as this instance grants them now."""
    return ApiKeyRead(
        id=row.id,
        name=row.name,
        role=row.role,
        scopes=sorted(request.app.state.role_scopes[row.role]),
        lookup_id=row.lookup_id,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def _audit_snapshot(row) -> dict:
    """What the audit log keeps of a key: never the key or its hash."""
    return {"id": row.id, "name": row.name, "role": row.role}
