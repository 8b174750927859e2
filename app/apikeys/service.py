"""API key operations: create, list, revoke, and resolving a presented key to a principal."""

import hmac
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.apikeys.models import ApiKey
from app.core.db import driver_connection
from app.core.errors import NotFound
from app.core.security import ROLE_SCOPES, Principal, generate_api_key, hash_api_key, lookup_id_of


async def create_api_key(session: AsyncSession, name: str, role: str, pepper: str) -> tuple[ApiKey, str]:
    key, lookup = generate_api_key()
    row = ApiKey(name=name, role=role, scopes=sorted(ROLE_SCOPES[role]), lookup_id=lookup,
                 key_hash=hash_api_key(key, pepper))
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row, key


async def list_api_keys(session: AsyncSession, include_revoked: bool = False) -> list[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return list((await session.scalars(query)).all())


async def revoke_api_key(session: AsyncSession, key_id: int) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"No API key with id {key_id}.")
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await session.flush()
    return row


async def resolve_principal(session: AsyncSession, key: str, pepper: str) -> Principal | None:
    """The principal of an active key, comparing hashes in constant time; None when unknown or revoked."""
    lookup = lookup_id_of(key)
    if lookup is None:
        return None
    # Every request runs this: straight on the driver (see bench/RESULTS.md), still in the request's session.
    row = await (await driver_connection(session)).fetchrow(_PRINCIPAL_SQL, lookup)
    if row is None or not hmac.compare_digest(row["key_hash"], hash_api_key(key, pepper)):
        return None
    return Principal(key_id=row["id"], name=row["name"], role=row["role"], scopes=frozenset(row["scopes"]))


_PRINCIPAL_SQL = "SELECT id, name, role, scopes, key_hash FROM api_key WHERE lookup_id = $1 AND revoked_at IS NULL"
