"""HTTP routes for customers, their holdings and activity events."""

from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import WrapValidator

from app.core.db import ReadSessionDep, SessionDep
from app.core.errors import InvalidInput, PreconditionFailed, problem_responses
from app.core.etag import (
    CONDITIONAL_GET_RESPONSES,
    CONDITIONAL_WRITE_RESPONSES,
    ETAG_HEADER,
    PATCH_RESPONSES,
    ConditionalGet,
    ConditionalWrite,
)
from app.core.idempotency import LOCATION_HEADER, creates
from app.core.pagination import CursorParam, LimitParam, Page, decode_cursor, page_of
from app.core.security import Scope, require_scope
from app.core.strict import NO_NUL_PATTERN, ParamInteger, QueryBoolean
from app.customers import flows, service
from app.customers.intake_schemas import EventBatch, EventBatchResult, ImportResult, checked_event_batch
from app.customers.schemas import (
    CustomerPatch,
    CustomerRead,
    CustomerSummary,
    CustomerUpsert,
    ExternalIdPath,
    HoldingRead,
    HoldingsPut,
    HoldingsRead,
    Segment,
)
from app.tiering import policies
from app.tiering.assignment import reads as tier_reads

router = APIRouter(prefix="/v1/customers", tags=["customers"], responses=problem_responses(401, 403))
events_router = APIRouter(prefix="/v1/events", tags=["events"], responses=problem_responses(401, 403))

READ = [require_scope(Scope.CUSTOMERS_READ)]
WRITE = [require_scope(Scope.CUSTOMERS_WRITE)]


async def _read(session, external_id: str) -> CustomerRead:
    customer, metrics = await service.get_customer(session, external_id)
    return CustomerRead(**CustomerSummary.model_validate(customer).model_dump(), metrics=metrics)


@router.get(
    "",
    summary="List customers",
    response_model=Page[CustomerSummary],
    dependencies=[require_scope(Scope.CUSTOMERS_LIST)],
    responses=problem_responses(404, 422),
)
async def list_customers(
    session: ReadSessionDep,
    cursor: CursorParam = None,
    limit: LimitParam = 50,
    segment: Segment | None = None,
    risk_level: Annotated[ParamInteger(1, 5) | None, Query()] = None,
    policy: Annotated[
        str | None, Query(alias="policy_key", max_length=40, pattern=NO_NUL_PATTERN, description="Tier policy key.")
    ] = None,
    tier: Annotated[str | None, Query(max_length=40, description="Tier under `policy_key`.")] = None,
    at_risk: Annotated[
        QueryBoolean | None, Query(description="Downgrade pending under `policy_key`: the retention list.")
    ] = None,
) -> Page[CustomerSummary]:
    """Customers in a stable order; follow `next_cursor` for the next page (new customers never shift pages).
    With `policy_key`, filter by `tier` and/or `at_risk` (customers who would fall a tier when their grace ends)."""
    filters = []
    if policy is not None:
        policy_id = (await policies.get_policy(session, policy)).id
        filters.append(tier_reads.tier_filter(policy_id, tier, at_risk))
    elif tier is not None or at_risk is not None:
        raise InvalidInput("policy_key", "is required with tier or at_risk", location="query")
    rows = await service.list_customers(
        session,
        after_id=decode_cursor(cursor),
        limit=limit,
        segment=segment,
        risk_level=risk_level,
        extra_filters=filters,
    )
    items, next_cursor = page_of(rows, limit)
    return Page[CustomerSummary](items=[CustomerSummary.model_validate(r) for r in items], next_cursor=next_cursor)


@creates(
    router,
    "/import",
    status_code=status.HTTP_200_OK,
    location="/v1/customers",
    summary="Import customers (NDJSON)",
    response_model=ImportResult,
    dependencies=WRITE,
    responses=problem_responses(413, 422),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "One CustomerImportLine JSON object per line.",
                    },
                    "example": '{"customer_id": "C00000042", "segment": "retail", "onboarded_at": '
                    '"2012-06-01T09:30:00Z", "risk_level": 3, "risk_assessed_at": "2026-02-10T14:00:00Z", '
                    '"marketing_consent": true}\n{"customer_id": "C00000043", "segment": "small_business", '
                    '"onboarded_at": "2020-01-15T00:00:00Z"}\n',
                }
            },
        }
    },
)
async def import_customers(request: Request, session: SessionDep) -> ImportResult:
    """Upsert up to 100,000 customers from NDJSON (one profile with its `customer_id` per line). Every line is
    validated; good lines are stored even when others are rejected, and each rejection names its line and field.
    With an Idempotency-Key, a retried import answers with the first import's counts."""
    limit = request.app.state.settings.max_import_lines
    lines: list[tuple[int, bytes]] = []  # (line number, bytes) of the non-blank lines
    line_no = 0
    buffer = b""

    def take(complete: list[bytes]) -> None:
        nonlocal line_no
        if line_no + len(complete) > limit:
            raise InvalidInput("body", f"at most {limit} lines per request")
        lines.extend((n, raw) for n, raw in enumerate(complete, line_no + 1) if raw.strip())
        line_no += len(complete)

    async for chunk in request.stream():
        buffer += chunk
        *complete, buffer = buffer.split(b"\n")
        take(complete)
    if buffer.strip():
        take([buffer])
    accepted, created, updated, rejections = await flows.import_customers(session, lines)
    return ImportResult(
        accepted=accepted, created=created, updated=updated, rejected=len(rejections), rejections=rejections
    )


@router.put(
    "/{customer_id}",
    summary="Create or replace a customer",
    response_model=CustomerRead,
    dependencies=WRITE,
    responses={
        **CONDITIONAL_WRITE_RESPONSES,
        201: {"model": CustomerRead, "description": "Created", "headers": {**ETAG_HEADER, **LOCATION_HEADER}},
        **problem_responses(422),
    },
)
async def upsert_customer(
    external_id: ExternalIdPath,
    body: CustomerUpsert,
    session: SessionDep,
    response: Response,
    conditional: ConditionalWrite,
) -> CustomerRead:
    """Create or replace a customer by the bank's own id: 201 when created, 200 when updated. Safe to retry.
    With If-Match, only if the customer exists and nobody changed it since you read it (412 otherwise)."""
    if conditional.if_match is not None:
        await _check_current(session, external_id, conditional)
    created = await flows.upsert_customer(session, external_id, body)
    response.status_code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
    if created:
        response.headers["Location"] = f"/v1/customers/{quote(external_id, safe='')}"
    return conditional.respond(await _read(session, external_id))


async def _check_current(session, external_id: str, conditional) -> None:
    """412 unless If-Match holds the customer's current tag (read locked, in the write's transaction)."""
    if not await service.lock_customer(session, external_id):
        raise PreconditionFailed("No such customer to match If-Match against.")
    conditional.check(await _read(session, external_id))


@router.get(
    "/{customer_id}",
    summary="Get a customer with metrics",
    response_model=CustomerRead,
    dependencies=READ,
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(404)},
)
async def get_customer(external_id: ExternalIdPath, session: SessionDep, conditional: ConditionalGet) -> CustomerRead:
    """The profile with its derived metrics (AUM, averages, activity), the values tier rules see, with its ETag
    (If-None-Match: 304 while it is unchanged; If-Match on PUT and PATCH: edit safely)."""
    return conditional.respond(await _read(session, external_id))


@router.patch(
    "/{customer_id}",
    summary="Change some profile fields",
    response_model=CustomerRead,
    dependencies=WRITE,
    responses={**PATCH_RESPONSES, **problem_responses(404, 422)},
)
async def patch_customer(
    external_id: ExternalIdPath, body: CustomerPatch, session: SessionDep, conditional: ConditionalWrite
) -> CustomerRead:
    """Change some profile fields; custom attributes are merged (null removes one). A `risk_level` without an
    assessment date, sent or stored, is a 409 naming `/risk_assessed_at` when the date is the stored one. With
    If-Match, only if nobody changed the customer since you read it (412)."""
    if conditional.if_match is not None:
        await service.customer_id_of(session, external_id)  # 404 first: RFC 9110 13.2.1, preconditions come after
        await _check_current(session, external_id, conditional)
    await flows.patch_customer(session, external_id, body)
    return conditional.respond(await _read(session, external_id))


@router.delete(
    "/{customer_id}",
    summary="Erase a customer",
    status_code=status.HTTP_204_NO_CONTENT,
    dependencies=[require_scope(Scope.CUSTOMERS_ERASE)],
    responses=problem_responses(404),
)
async def erase_customer(external_id: ExternalIdPath, session: SessionDep, request: Request) -> None:
    """Erase a customer (right to erasure): personal fields, holdings, events, survey comments and the client's
    event ids are removed; complaints stay as anonymous records (category, status history, dates) with their
    descriptions and notes redacted; anonymous counts stay. Repeating the request succeeds again, and the id may be
    created and erased again."""
    await flows.erase_customer(
        session, external_id, request.app.state.settings.api_key_pepper, request.state.principal.name
    )


@router.get(
    "/{customer_id}/holdings",
    summary="Get a customer's holdings",
    response_model=HoldingsRead,
    dependencies=READ,
    responses=problem_responses(404),
)
async def get_holdings(external_id: ExternalIdPath, session: SessionDep) -> HoldingsRead:
    """The customer's current products and balances."""
    rows = await service.get_holdings(session, external_id)
    return HoldingsRead(holdings=[HoldingRead.model_validate(r) for r in rows])


@router.put(
    "/{customer_id}/holdings",
    summary="Replace a customer's holdings",
    response_model=HoldingsRead,
    dependencies=WRITE,
    responses=problem_responses(404, 422),
)
async def replace_holdings(external_id: ExternalIdPath, body: HoldingsPut, session: SessionDep) -> HoldingsRead:
    """Replace the customer's whole product set. Each balance is also kept in a dated history, from which
    averages such as aum_avg_3m are computed."""
    rows = await flows.replace_holdings(session, external_id, body.holdings)
    return HoldingsRead(holdings=[HoldingRead.model_validate(r) for r in rows])


@events_router.post(
    "",
    summary="Record activity events",
    response_model=EventBatchResult,
    dependencies=[require_scope(Scope.EVENTS_WRITE)],
    responses=problem_responses(413, 422),
)
async def ingest_events(
    body: Annotated[EventBatch, WrapValidator(checked_event_batch)], session: SessionDep, request: Request
) -> EventBatchResult:
    """Record transactions, app logins and referrals for many customers. Each event carries your `event_id`:
    a retried batch changes nothing. A batch with any unknown customer is refused whole (422 naming each)."""
    # The body was read and validated already (checked without per-event Python when it can be: a
    # CheckedEventBatch); the statement reads the events from its JSON (app.customers.events).
    recorded = await flows.ingest_events(session, body.events, (await request.body()).decode())
    return EventBatchResult(received=len(body.events), recorded=recorded, duplicates=len(body.events) - recorded)
