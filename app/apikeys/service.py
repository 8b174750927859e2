"""API key operations: create, list, revoke, and resolving a presented key to a principal."""

import hmac
import time
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.apikeys.models import ApiKey
from app.core import invalidation
from app.core.db import driver_connection
from app.core.errors import NotFound
from app.core.pagination import PageRequest, keyset
from app.core.security import ROLE_SCOPES, Principal, generate_api_key, hash_api_key, lookup_id_of


async def create_api_key(session: AsyncSession, name: str, role: str, pepper: str) -> tuple[ApiKey, str]:
    if role not in ROLE_SCOPES:
        raise ValueError(f"unknown role {role!r}")
    key, lookup = generate_api_key()
    row = ApiKey(name=name, role=role, lookup_id=lookup, key_hash=hash_api_key(key, pepper))
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row, key


async def list_api_keys(
    session: AsyncSession, include_revoked: bool = False, page: PageRequest | None = None
) -> list[ApiKey]:
    """Keys in creation order: all of them, or a page's limit + 1."""
    query = select(ApiKey)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    query = keyset(query, ApiKey.id, page) if page is not None else query.order_by(ApiKey.id)
    return list((await session.scalars(query)).all())


async def get_api_key(session: AsyncSession, key_id: int) -> ApiKey:
    row = await session.get(ApiKey, key_id)
    if row is None:
        raise NotFound(f"No API key with id {key_id}.")
    return row


async def revoke_api_key(session: AsyncSession, key_id: int) -> ApiKey:
    row = await get_api_key(session, key_id)
    if row.revoked_at is None:
        row.revoked_at = datetime.now(UTC)
        await session.flush()
        await invalidation.notify(session, invalidation.API_KEYS)  # every instance drops its cached keys on commit
    return row


class PrincipalCache:
    """Recently resolved keys, by their HMAC (never the key itself), for `ttl` seconds: most requests then
    authenticate without a query. A revocation clears the cache of the instance that made it at once, and every
    other instance's on its NOTIFY (app.core.invalidation), within moments; `ttl` bounds it when a listener is
    down. Unknown keys are never cached. A ttl of 0 turns caching off."""

    def __init__(self, ttl: float, clock=time.monotonic, max_entries: int = 10_000) -> None:
        self.ttl, self.clock, self.max_entries = ttl, clock, max_entries
        self.entries: dict[str, tuple[Principal, float]] = {}

    def get(self, digest: str) -> Principal | None:
        entry = self.entries.get(digest)
        if entry is None or entry[1] <= self.clock():
            return None
        return entry[0]

    def put(self, digest: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self.entries) >= self.max_entries:
            self.entries.clear()
        self.entries[digest] = (principal, self.clock() + self.ttl)

    def clear(self) -> None:
        self.entries.clear()


async def resolve_principal(
    session: AsyncSession | Any,
    key: str,
    pepper: str,
    cache: PrincipalCache | None = None,
    role_scopes: dict[str, frozenset] = ROLE_SCOPES,
) -> Principal | None:
    """The principal of an active key, with its role's scopes, comparing hashes in constant time; None when unknown
    or revoked. `session`: the request's session, or a driver connection (the hot reads have no session)."""
    lookup = lookup_id_of(key)
    if lookup is None:
        return None
    digest = hash_api_key(key, pepper)
    if cache is not None and (principal := cache.get(digest)) is not None:
        return principal
    # On a cache miss: straight on the driver (see bench/HISTORY.md), still in the request's session.
    connection = await driver_connection(session) if isinstance(session, AsyncSession) else session
    row = await connection.fetchrow(_PRINCIPAL_SQL, lookup)
    if row is None or not hmac.compare_digest(row["key_hash"], digest):
        return None
    principal = Principal(
        key_id=row["id"], name=row["name"], role=row["role"], scopes=role_scopes.get(row["role"], frozenset())
    )
    if cache is not None:
        cache.put(digest, principal)
    return principal


_PRINCIPAL_SQL = "SELECT id, name, role, key_hash FROM api_key WHERE lookup_id = $1 AND revoked_at IS NULL"
