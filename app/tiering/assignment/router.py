"""HTTP routes for customers' tiers: read with explanation, refresh, overrides, history, the change feed and the
relationship manager's care calendar."""

from contextlib import nullcontext
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from app.audit import service as audit_service
from app.core.db import ReadSessionDep, SessionDep, driver_connection
from app.core.errors import PreconditionFailed, problem_responses
from app.core.etag import (
    CONDITIONAL_GET_RESPONSES,
    CONDITIONAL_WRITE_RESPONSES,
    ConditionalGet,
    ConditionalRequest,
    ConditionalWrite,
    etag_of,
)
from app.core.hotpath import HotRead
from app.core.i18n import RequestLanguage, language_headers
from app.core.pagination import (
    DEFAULT_PAGE_SIZE,
    LimitParam,
    Page,
    decode_key_cursor,
    encode_cursor,
    key_cursor_param,
    page_of,
)
from app.core.security import Scope, require_scope
from app.core.strict import NO_NUL_PATTERN, ParamInteger
from app.customers import flows as customer_flows
from app.customers import service as customers_service
from app.customers.schemas import EXTERNAL_ID_PATTERN, ExternalIdPath
from app.tiering import policies
from app.tiering.assignment import overrides, reads
from app.tiering.assignment.schemas import (
    CareEntry,
    CustomerTiers,
    CustomerTiersBulk,
    CustomerTiersBulkRead,
    CustomerTiersQuery,
    TierOverridePut,
    TierOverrideRead,
    TierTransitionPage,
    TierTransitionRead,
)
from app.tiering.errors import NoOverride
from app.tiering.schemas import POLICY_KEY_PATTERN, TIER_CODE_PATTERN

DEFAULT_QUERY = CustomerTiersQuery()

customer_tiers_router = APIRouter(
    prefix="/v1/customers/{customer_id}/tiers", tags=["tiers"], responses=problem_responses(401, 403, 404)
)
transitions_router = APIRouter(prefix="/v1/tier-transitions", tags=["tiers"], responses=problem_responses(401, 403))
bulk_tiers_router = APIRouter(prefix="/v1/customers", tags=["tiers"], responses=problem_responses(401, 403))
care_router = APIRouter(prefix="/v1/care-calendar", tags=["tiers"], responses=problem_responses(401, 403))

PolicyKeyPath = Annotated[
    str, Path(max_length=40, pattern=NO_NUL_PATTERN, description="The policy key, e.g. `wealth`.", examples=["wealth"])
]


ASKED_DEFAULT = reads.TiersAsked()


async def _tiers(session, external_id: str, asked: reads.TiersAsked = ASKED_DEFAULT) -> CustomerTiers:
    """The customer's tiers as this session sees them (after its own writes); labels in `asked`'s language."""
    document = await reads.customer_tiers_json(
        await driver_connection(session), lambda: nullcontext(session), external_id, asked
    )
    return CustomerTiers.model_validate_json(document)


def _in_language(request: Request, response: Response, language: str) -> reads.TiersAsked:
    """Every policy, explained, with labels in the request's language, which the response then names
    (Content-Language, Vary), as GET .../tiers does."""
    response.headers.update(language_headers(language))
    return reads.TiersAsked(None, True, language, request.app.state.settings.default_language)


def _asked(state, query: CustomerTiersQuery | CustomerTiersBulkRead, language: str) -> reads.TiersAsked:
    return reads.TiersAsked(query.policy_key, query.explain, language, state.settings.default_language)


async def render_customer_tiers(
    connection, state, customer_id: str, query: CustomerTiersQuery = DEFAULT_QUERY, language: str | None = None
) -> bytes:
    """The CustomerTiers document of the customer with this external id (tests hold it to the model, field by
    field)."""
    asked = _asked(state, query, language or state.settings.default_language)
    return await reads.customer_tiers_json(connection, state.sessionmaker, customer_id, asked)


@customer_tiers_router.get(
    "", summary="Get a customer's tiers", response_model=CustomerTiers, dependencies=[require_scope(Scope.TIERS_READ)]
)
async def get_customer_tiers(
    external_id: ExternalIdPath,
    query: Annotated[CustomerTiersQuery, Query()],
    language: RequestLanguage,
    session: ReadSessionDep,
    request: Request,
) -> Response:
    """The customer's tier under every active policy (or those asked with `policy_key`): since when, by which
    version, whether a downgrade is pending (at risk, to which tier, on which date), any override, and why: each
    tier tried with every comparison's value, threshold and result (explain=false leaves that out). Labels are in
    the customer's language (Accept-Language; Content-Language says which)."""
    document = await render_customer_tiers(
        await driver_connection(session), request.app.state, external_id, query, language
    )
    return Response(document, media_type="application/json", headers=language_headers(language))


# Served in front of the router (app/core/hotpath.py): the app reads it on every screen.
HOT_READS = [
    HotRead(
        "/v1/customers/{customer_id}/tiers",
        Scope.TIERS_READ,
        {"customer_id": EXTERNAL_ID_PATTERN},
        render_customer_tiers,
        CustomerTiersQuery,
        language=True,
    )
]


@bulk_tiers_router.post(
    "/tiers:read",
    summary="Get many customers' tiers",
    response_model=CustomerTiersBulk,
    dependencies=[require_scope(Scope.TIERS_READ)],
    responses=problem_responses(422),
)
async def read_customers_tiers(
    body: CustomerTiersBulkRead, language: RequestLanguage, session: SessionDep, request: Request
) -> Response:
    """The tiers of up to 1,000 customers in one call, for a backend that renders a list of them: each item the
    same tiers as GET /v1/customers/{customer_id}/tiers (one query for all), an unknown customer an item with
    `found: false`. A read, sent as POST so that a thousand ids fit in a body rather than a URL; it changes
    nothing and may be repeated. `explain` is false unless asked for."""
    state = request.app.state
    document = await reads.customers_tiers_json(
        await driver_connection(session),
        state.sessionmaker,
        list(dict.fromkeys(body.customer_ids)),
        _asked(state, body, language),
    )
    return Response(document, media_type="application/json", headers=language_headers(language))


@customer_tiers_router.post(
    "/evaluate",
    summary="Re-evaluate a customer's tiers",
    response_model=CustomerTiers,
    dependencies=[require_scope(Scope.CUSTOMERS_WRITE)],
)
async def evaluate_customer_tiers(
    external_id: ExternalIdPath, language: RequestLanguage, session: SessionDep, request: Request, response: Response
) -> CustomerTiers:
    """Re-evaluate the customer's tiers now (they also refresh on every change to the customer's data). Labels are
    in the customer's language (Accept-Language; Content-Language says which)."""
    customer_id = await customers_service.customer_id_of(session, external_id)
    await customer_flows.customers_changed(session, [customer_id])
    return await _tiers(session, external_id, _in_language(request, response, language))


@customer_tiers_router.get(
    "/history",
    summary="Get a customer's tier history",
    response_model=TierTransitionPage,
    dependencies=[require_scope(Scope.TIERS_READ)],
    responses=problem_responses(422),
)
async def get_customer_tier_history(
    external_id: ExternalIdPath,
    session: SessionDep,
    cursor: key_cursor_param(2) = None,
    limit: LimitParam = 100,
) -> TierTransitionPage:
    """Every tier change of this customer, oldest first; follow `next_cursor`."""
    customer_id = await customers_service.customer_id_of(session, external_id)
    rows = await reads.transitions_page(
        session, after=decode_key_cursor(cursor, 2), limit=limit, customer_id=customer_id
    )
    return _transition_page(rows, limit)


OVERRIDE_ETAG = {
    "ETag": {
        "description": "The override's strong entity tag after the write (as GET .../override gives it), for "
        "If-Match on the next write; absent when no override is left.",
        "schema": {"type": "string"},
    }
}


@customer_tiers_router.get(
    "/{policy_key}/override",
    summary="Get a tier override",
    response_model=TierOverrideRead,
    dependencies=[require_scope(Scope.TIERS_READ)],
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(404)},
)
async def get_tier_override(
    external_id: ExternalIdPath, policy_key: PolicyKeyPath, session: SessionDep, conditional: ConditionalGet
) -> TierOverrideRead:
    """The override in force on the customer's tier under this policy, with its ETag (If-None-Match: 304 while
    unchanged; If-Match on PUT or DELETE: change it only if nobody did since). 404 when none is in force."""
    await policies.get_policy(session, policy_key)
    override = _override_read(await _tiers(session, external_id), policy_key)
    if override is None:
        raise NoOverride(policy_key)
    return conditional.respond(override)


@customer_tiers_router.put(
    "/{policy_key}/override",
    summary="Hold a customer in a tier",
    response_model=CustomerTiers,
    dependencies=[require_scope(Scope.TIERS_WRITE)],
    responses={**CONDITIONAL_WRITE_RESPONSES, 200: {"headers": OVERRIDE_ETAG}, **problem_responses(422)},
)
async def put_tier_override(
    external_id: ExternalIdPath,
    policy_key: PolicyKeyPath,
    body: TierOverridePut,
    language: RequestLanguage,
    session: SessionDep,
    request: Request,
    conditional: ConditionalWrite,
) -> CustomerTiers:
    """Hold the customer in a tier (a relationship manager's decision) with a reason; it stops applying by
    itself at `expires_at`. The change appears in the feed. With If-Match (the override's ETag, from GET
    .../override or the last write), only if nobody changed the override since (412 otherwise, and when there is
    none to match). Answers the customer's tiers, labels in the customer's language (Accept-Language), and the
    override's new ETag. Audited."""
    customer_id = await customers_service.customer_id_of(session, external_id)
    policy = await policies.get_policy(session, policy_key)
    before = await _locked_override(session, customer_id, policy, external_id, policy_key, conditional)
    await overrides.set_override(
        session, customer_id, policy, body.tier, body.reason, body.expires_at, request.state.principal.name
    )
    tiers = await _tiers(session, external_id, _in_language(request, conditional.response, language))
    after = _override_read(tiers, policy_key)
    await _audit_override(
        session, request, "tier_override.set", customer_id, policy_key, _snapshot(before), _snapshot(after)
    )
    if after is not None:  # none when it expired as it was set
        conditional.response.headers["ETag"] = etag_of(after)
    return tiers


@customer_tiers_router.delete(
    "/{policy_key}/override",
    summary="Remove a tier override",
    response_model=CustomerTiers,
    dependencies=[require_scope(Scope.TIERS_WRITE)],
    responses=problem_responses(412),
)
async def delete_tier_override(
    external_id: ExternalIdPath,
    policy_key: PolicyKeyPath,
    language: RequestLanguage,
    session: SessionDep,
    request: Request,
    conditional: ConditionalWrite,
) -> CustomerTiers:
    """Remove an override; the tier the rules give applies again. With If-Match, only if the override still has
    that ETag (412 otherwise, and when there is none). Answers the customer's tiers, labels in the customer's
    language. Audited."""
    customer_id = await customers_service.customer_id_of(session, external_id)
    policy = await policies.get_policy(session, policy_key)
    before = await _locked_override(session, customer_id, policy, external_id, policy_key, conditional)
    await overrides.remove_override(session, customer_id, policy)
    tiers = await _tiers(session, external_id, _in_language(request, conditional.response, language))
    after = _override_read(tiers, policy_key)
    if _snapshot(before) != _snapshot(after):
        await _audit_override(
            session, request, "tier_override.remove", customer_id, policy_key, _snapshot(before), _snapshot(after)
        )
    return tiers


def _override_read(tiers: CustomerTiers, policy_key: str) -> TierOverrideRead | None:
    """The override in force under the policy, as the customer's tiers show it."""
    tier = next((t for t in tiers.tiers if t.policy_key == policy_key), None)
    return tier.override if tier is not None else None


async def _locked_override(
    session, customer_id: int, policy, external_id: str, policy_key: str, conditional: ConditionalRequest
) -> TierOverrideRead | None:
    """The override in force, read with the customer's assignment under the policy locked for the write (no
    other write between this check and it): 412 unless If-Match is absent or holds its tag."""
    await overrides.lock_assignment(session, customer_id, policy.id)
    current = _override_read(await _tiers(session, external_id), policy_key)
    if conditional.if_match is not None and current is None:
        raise PreconditionFailed(f"No override of {policy_key} in force to match If-Match against.")
    if current is not None:
        conditional.check(current)
    return current


def _snapshot(override: TierOverrideRead | None) -> dict:
    """The audit snapshot of an override: tier and expiry only. The reason is free text that may name the
    customer, and the customer is keyed by the internal id, so an erased customer leaves nothing personal here."""
    if override is None:
        return {"override": None}
    return {
        "override": override.tier,
        "expires_at": override.expires_at.isoformat() if override.expires_at else None,
    }


async def _audit_override(
    session, request: Request, action: str, customer_id: int, policy_key: str, before: dict, after: dict
) -> None:
    await audit_service.record(
        session,
        request.state.principal.name,
        action,
        "tier_override",
        f"customer:{customer_id}/{policy_key}",
        before,
        after,
    )


def _transition_page(rows, limit: int) -> TierTransitionPage:
    items, _ = page_of(rows, limit, key_of=lambda row: (row[0].tx_id, row[0].id))
    last = items[-1][0] if items else None
    return TierTransitionPage(
        items=[
            TierTransitionRead(
                id=t.id,
                customer_id=external_id,
                policy_key=key,
                from_tier=t.from_code,
                to_tier=t.to_code,
                direction=t.direction,
                reason=t.reason,
                at=t.at,
            )
            for t, key, external_id in items
        ],
        next_cursor=encode_cursor(last.tx_id, last.id) if last else None,
    )


@transitions_router.get(
    "",
    summary="Follow the tier change feed",
    response_model=TierTransitionPage,
    dependencies=[require_scope(Scope.TRANSITIONS_READ)],
    responses=problem_responses(404, 422),
)
async def list_tier_transitions(
    session: SessionDep,
    cursor: key_cursor_param(2) = None,
    policy: Annotated[
        str | None,
        Query(alias="policy_key", max_length=40, pattern=NO_NUL_PATTERN, description="Only this policy's moves."),
    ] = None,
    limit: LimitParam = 100,
) -> TierTransitionPage:
    """The change feed of every upgrade and downgrade, in a stable order. Keep the `next_cursor` and pass it as
    `cursor` next time: you get each transition exactly once, none missed, none repeated (each carries an `id`
    to de-duplicate on, should a page be read twice). With no new transitions the same cursor comes back."""
    policy_id = (await policies.get_policy(session, policy)).id if policy else None
    key = decode_key_cursor(cursor, 2)
    rows = await reads.transitions_page(session, after=key, limit=limit, policy_id=policy_id)
    page = _transition_page(rows, limit)
    if page.next_cursor is None and cursor is not None:
        page.next_cursor = cursor
    return page


@care_router.get(
    "",
    summary="Upcoming birthdays and anniversaries of a tier",
    response_model=Page[CareEntry],
    dependencies=[require_scope(Scope.CUSTOMERS_LIST)],
    responses=problem_responses(404, 422),
)
async def care_calendar(
    session: SessionDep,
    policy: Annotated[
        str, Query(alias="policy_key", max_length=40, pattern=POLICY_KEY_PATTERN, description="The tier policy's key.")
    ],
    tier: Annotated[str, Query(max_length=40, pattern=TIER_CODE_PATTERN, description="A tier code of that policy.")],
    days: Annotated[ParamInteger(0, 60), Query()] = 7,
    cursor: key_cursor_param(3, (9, 18, 9)) = None,  # a day and an occasion: int4
    limit: LimitParam = DEFAULT_PAGE_SIZE,
) -> Page[CareEntry]:
    """Customers of a tier whose birthday or customer anniversary falls within the next `days` days: the small
    attentions that keep loyal customers. In date order; follow `next_cursor`."""
    policy_row = await policies.get_policy(session, policy)
    rows = await reads.care_calendar(session, policy_row.id, tier, days, decode_key_cursor(cursor, 3), limit)
    items, next_cursor = page_of(
        rows, limit, key_of=lambda row: (row["day_key"], row["customer_key"], row["occasion_key"])
    )
    return Page[CareEntry](
        items=[CareEntry(**{k: row[k] for k in CareEntry.model_fields}) for row in items], next_cursor=next_cursor
    )
