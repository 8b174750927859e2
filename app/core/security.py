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
from app.core.ratelimit import client_address


class Scope(StrEnum):
    CUSTOMERS_READ = "customers:read"  # one customer by id: profile and holdings
    CUSTOMERS_LIST = "customers:list"  # every customer: the customer list (by tier, at risk), the care calendar
    CUSTOMERS_WRITE = "customers:write"
    CUSTOMERS_ERASE = "customers:erase"
    EVENTS_WRITE = "events:write"
    PRODUCTS_READ = "products:read"
    PRODUCTS_WRITE = "products:write"
    ATTRIBUTES_READ = "attributes:read"
    ATTRIBUTES_WRITE = "attributes:write"
    TIERS_READ = "tiers:read"  # one customer's tiers and their history
    TIERS_WRITE = "tiers:write"  # overrides
    TRANSITIONS_READ = "transitions:read"  # the change feed of every customer's tier moves
    POLICIES_READ = "policies:read"
    POLICIES_WRITE = "policies:write"
    RECOMMENDATIONS_READ = "recommendations:read"
    FEEDBACK_WRITE = "feedback:write"  # recommendation feedback, survey answers, opening a complaint
    FEEDBACK_READ = "feedback:read"  # survey answers and complaints as stored: the customers' own words
    COMPLAINTS_WRITE = "complaints:write"  # moving a complaint through its lifecycle
    REPORTS_READ = "reports:read"
    BENEFITS_READ = "benefits:read"  # the benefit catalogue, one customer's benefits and uses
    BENEFITS_WRITE = "benefits:write"  # the catalogue: add, change, deactivate
    BENEFITS_USE = "benefits:use"  # record a customer's use of a benefit
    ENGAGEMENT_READ = "engagement:read"  # communities, activities, their members and metrics
    ENGAGEMENT_WRITE = "engagement:write"  # programmes, invitations, membership moves, attendance
    PARTICIPATION_WRITE = "participation:write"  # a customer's answers: join, leave, RSVP; member activity
    MANAGERS_READ = "managers:read"  # relationship managers, who serves whom and its history, coverage, contacts
    MANAGERS_WRITE = "managers:write"  # managers, assignment runs, manual reassignment
    CONTACTS_WRITE = "contacts:write"  # record a contact with a customer
    ADMIN = "admin"


# What each role may do (least privilege; the table in README.md). A key's scopes are its role's, read when the key
# is resolved: a change here (or in TIERWISE_ROLE_GRANTS) applies to every existing key.
ROLE_SCOPES: dict[str, frozenset[Scope]] = {
    # the mobile-banking backend: one customer at a time (profile, tiers, recommendations); writes feedback
    "app": frozenset(
        {
            Scope.CUSTOMERS_READ,
            Scope.TIERS_READ,
            Scope.RECOMMENDATIONS_READ,
            Scope.FEEDBACK_WRITE,
            Scope.PRODUCTS_READ,
            Scope.ATTRIBUTES_READ,
            Scope.BENEFITS_READ,
            Scope.BENEFITS_USE,
            Scope.PARTICIPATION_WRITE,
        }
    ),
    # core-banking feeds: write customers, holdings and events; follow the tier change feed
    "integration": frozenset(
        {
            Scope.CUSTOMERS_READ,
            Scope.CUSTOMERS_WRITE,
            Scope.EVENTS_WRITE,
            Scope.PRODUCTS_READ,
            Scope.ATTRIBUTES_READ,
            Scope.TRANSITIONS_READ,
            Scope.PARTICIPATION_WRITE,
        }
    ),
    "admin": frozenset(Scope),
}


def role_scopes(grants: dict[str, list[str]] | None = None) -> dict[str, frozenset[Scope]]:
    """Each role's scopes: ROLE_SCOPES, plus the scopes a deployment gives a role explicitly (TIERWISE_ROLE_GRANTS,
    e.g. {"integration": ["customers:erase"]}). An unknown scope there stops the service from starting."""
    scopes = dict(ROLE_SCOPES)
    for role, granted in (grants or {}).items():
        unknown = set(granted) - set(Scope)
        if unknown:
            raise ValueError(f"TIERWISE_ROLE_GRANTS: unknown scopes for {role}: {', '.join(sorted(unknown))}")
        scopes[role] = scopes[role] | {Scope(name) for name in granted}
    return scopes


KEY_PREFIX = "tw"
api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="An API key created with `tierwise api-keys create` or POST /v1/api-keys.",
)


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
puts its resolver on `app.state.resolve_principal` (app.main: the api-keys domain's, with the role scopes), so the
core imports no domain."""


async def authorize(state, session, key: str | None, scope: Scope, request_scope) -> Principal:
    """Authenticate the caller by API key (401; 429 once its address has failed too often), apply the key's rate
    limit (429) and check one scope (403). `state` is the app's state (its `resolve_principal`, a PrincipalResolver,
    and limiters); `session` the request's session, or a driver connection (the hot reads); `request_scope` the ASGI
    scope (the client's address is read from it on a failure)."""
    if not key:
        raise Unauthorized("Send an API key in the X-API-Key header.", headers={"WWW-Authenticate": "ApiKey"})
    principal = await state.resolve_principal(session, key)
    if principal is None:
        failures = getattr(state, "failed_auth", None)
        if failures is not None:
            failures.failed(client_address(request_scope, state.settings.trusted_proxies))
        raise Unauthorized("The API key is unknown or revoked.", headers={"WWW-Authenticate": "ApiKey"})
    request_state = request_scope.get("state")
    if request_state is not None:  # for the access log (app.core.middleware): the key's name, never the key
        request_state["api_key_name"] = principal.name
    limiter = getattr(state, "rate_limiter", None)
    if limiter is not None:
        headers = await limiter.acquire(principal.key_id, principal.role)
        if headers is not None and request_state is not None:  # sent on the answer, whatever it is
            request_state["rate_limit_headers"] = headers
    if scope not in principal.scopes:
        raise Forbidden(f"This API key (role {principal.role}) lacks the scope '{scope}'.")
    return principal


def require_scope(scope: Scope):
    """A dependency that authorizes the caller for one scope (see `authorize`); routes list it in
    `dependencies=`. The principal is kept on `request.state.principal`."""

    async def check_scope(
        request: Request, session: SessionDep, key: Annotated[str | None, Depends(api_key_header)]
    ) -> Principal:
        principal = request.state.principal = await authorize(request.app.state, session, key, scope, request.scope)
        return principal

    check_scope.required_scope = scope  # read by the access test that walks every route
    return Depends(check_scope)


def principal_of(request: Request) -> Principal:
    return request.state.principal


CurrentPrincipal = Annotated[Principal, Depends(principal_of)]
