"""API keys and scopes: every /v1 route declares the scope it needs with `require_scope`."""

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader

from app.core.db import SessionDep
from app.core.errors import Forbidden, Unauthorized


class Scope(StrEnum):
    CUSTOMERS_READ = "customers:read"
    CUSTOMERS_WRITE = "customers:write"
    EVENTS_WRITE = "events:write"
    PRODUCTS_READ = "products:read"
    PRODUCTS_WRITE = "products:write"
    ATTRIBUTES_READ = "attributes:read"
    ATTRIBUTES_WRITE = "attributes:write"
    TIERS_READ = "tiers:read"
    TIERS_WRITE = "tiers:write"
    POLICIES_READ = "policies:read"
    POLICIES_WRITE = "policies:write"
    RECOMMENDATIONS_READ = "recommendations:read"
    FEEDBACK_WRITE = "feedback:write"
    REPORTS_READ = "reports:read"
    ADMIN = "admin"


ROLE_SCOPES: dict[str, frozenset[Scope]] = {
    # the mobile-banking backend: reads customers, tiers and recommendations, writes feedback
    "app": frozenset({Scope.CUSTOMERS_READ, Scope.TIERS_READ, Scope.RECOMMENDATIONS_READ, Scope.FEEDBACK_WRITE,
                      Scope.PRODUCTS_READ, Scope.ATTRIBUTES_READ}),
    # core-banking feeds: write customers, holdings and events
    "integration": frozenset({Scope.CUSTOMERS_READ, Scope.CUSTOMERS_WRITE, Scope.EVENTS_WRITE, Scope.PRODUCTS_READ,
                              Scope.ATTRIBUTES_READ}),
    "admin": frozenset(Scope),
}

KEY_PREFIX = "tw"
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False,
                              description="An API key created with `tierwise api-keys create` or POST /v1/api-keys.")


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: int
    name: str
    role: str
    scopes: frozenset[str]


def generate_api_key() -> tuple[str, str]:
    """A new random key and its public lookup id: tw_<lookup>_<secret>."""
    lookup = secrets.token_hex(6)
    return f"{KEY_PREFIX}_{lookup}_{secrets.token_urlsafe(32)}", lookup


def hash_api_key(key: str, pepper: str) -> str:
    return hmac.new(pepper.encode(), key.encode(), hashlib.sha256).hexdigest()


def lookup_id_of(key: str) -> str | None:
    parts = key.split("_", 2)
    if len(parts) != 3 or parts[0] != KEY_PREFIX or len(parts[1]) != 12:
        return None
    return parts[1]


PrincipalResolver = Callable[[Any, str], Awaitable[Principal | None]]
"""`(session or driver connection, key) -> the key's principal, or None when it is unknown or revoked`. The app
puts its resolver on `app.state.resolve_principal` (app.main: the api-keys domain's), so the core imports no
domain."""


async def authorize(state, session, key: str | None, scope: Scope) -> Principal:
    """Authenticate the caller by API key (401), apply the key's rate limit (429) and check one scope (403).
    `state` is the app's state (its `resolve_principal`, a PrincipalResolver, and rate limiter); `session` the
    request's session, or a driver connection (the hot reads)."""
    if not key:
        raise Unauthorized("Send an API key in the X-API-Key header.", headers={"WWW-Authenticate": "ApiKey"})
    principal = await state.resolve_principal(session, key)
    if principal is None:
        raise Unauthorized("The API key is unknown or revoked.", headers={"WWW-Authenticate": "ApiKey"})
    limiter = getattr(state, "rate_limiter", None)
    if limiter is not None:
        limiter.check(principal.key_id, principal.role)
    if scope not in principal.scopes:
        raise Forbidden(f"This API key (role {principal.role}) lacks the scope '{scope}'.")
    return principal


def require_scope(scope: Scope):
    """A dependency that authorizes the caller for one scope (see `authorize`); routes list it in
    `dependencies=`. The principal is kept on `request.state.principal`."""

    async def check_scope(request: Request, session: SessionDep,
                          key: Annotated[str | None, Depends(api_key_header)]) -> Principal:
        principal = request.state.principal = await authorize(request.app.state, session, key, scope)
        return principal

    check_scope.required_scope = scope  # read by the access test that walks every route
    return Depends(check_scope)


def principal_of(request: Request) -> Principal:
    return request.state.principal


CurrentPrincipal = Annotated[Principal, Depends(principal_of)]
