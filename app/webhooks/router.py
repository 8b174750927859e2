"""HTTP routes for webhooks (admin only): subscriptions, their secret, the event types, the delivery log and
redelivery. Every write is audited with the calling key's name; secrets never reach the audit log."""

from typing import Annotated

from fastapi import APIRouter, Body, Path, Query, Request, Response, status

from app.audit.service import record_change
from app.audit.writes import AuditedWrite
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.etag import (
    CONDITIONAL_GET_RESPONSES,
    CONDITIONAL_WRITE_RESPONSES,
    ConditionalGet,
    etag_of,
)
from app.core.idempotency import LOCATION_HEADER, creates
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.strict import BIGINT_MAX, ParamInteger
from app.webhooks import service
from app.webhooks.events import EVENT_TYPES
from app.webhooks.schemas import (
    AttemptRead,
    DeliveryDetail,
    DeliveryRead,
    DeliveryState,
    EventTypeRead,
    RedeliveredCount,
    SecretRotation,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)

router = APIRouter(
    prefix="/v1/webhooks",
    tags=["webhooks"],
    dependencies=[require_scope(Scope.ADMIN)],
    responses=problem_responses(401, 403),
)

WebhookId = Annotated[ParamInteger(1, BIGINT_MAX), Path(description="The subscription's id.", examples=[1])]
DeliveryId = Annotated[ParamInteger(1, BIGINT_MAX), Path(description="The delivery's id.", examples=[1])]


@router.get(
    "/event-types",
    summary="List the webhook event types",
    response_model=Page[EventTypeRead],
    responses=problem_responses(422),
)
async def list_event_types(page: PageParams) -> Page[EventTypeRead]:
    """Every event type a subscription can ask for, with what it means and the JSON schema of its `data`; follow
    `next_cursor`."""
    return Page[EventTypeRead].of_sequence(
        [
            EventTypeRead(name=e.name, description=e.description, payload_schema=e.payload.model_json_schema())
            for e in EVENT_TYPES.values()
        ],
        page,
    )


@creates(
    router,
    "",
    summary="Subscribe a URL to events",
    location="/v1/webhooks/{id}",
    response_model=WebhookCreated,
    responses=problem_responses(422),
)
async def create_webhook(
    body: WebhookCreate, session: SessionDep, request: Request, response: Response
) -> WebhookCreated:
    """Subscribe a URL to event types. The response holds the signing `secret`, this once: every delivery is
    signed with it (the `Tierwise-Signature` header; see the tag's description for the scheme). Its ETag is the
    subscription's, for a later If-Match."""
    row, secret = await service.create_subscription(session, body, request.app.state.settings)
    created = WebhookRead.model_validate(row)
    await record_change(session, request, "webhook.create", "webhook", row.id, None, created)
    response.headers["ETag"] = etag_of(created)
    return WebhookCreated(**created.model_dump(), secret=secret)


@router.get(
    "", summary="List webhook subscriptions", response_model=Page[WebhookRead], responses=problem_responses(422)
)
async def list_webhooks(session: SessionDep, page: PageParams) -> Page[WebhookRead]:
    """Subscriptions in creation order; follow `next_cursor`. Secrets are never shown again."""
    rows = await service.list_subscriptions(session, page)
    return Page[WebhookRead].of(rows, page, WebhookRead.model_validate)


@router.get(
    "/{webhook_id}",
    summary="Get a webhook subscription",
    response_model=WebhookRead,
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(404)},
)
async def get_webhook(webhook_id: WebhookId, session: SessionDep, conditional: ConditionalGet) -> WebhookRead:
    """One subscription, with its ETag (send it in If-None-Match for a 304, in If-Match to edit safely)."""
    return conditional.respond(WebhookRead.model_validate(await service.get_subscription(session, webhook_id)))


@router.patch(
    "/{webhook_id}",
    summary="Change a webhook subscription",
    response_model=WebhookRead,
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(404, 422)},
)
async def update_webhook(
    webhook_id: WebhookId, body: WebhookUpdate, session: SessionDep, request: Request, write: AuditedWrite
) -> WebhookRead:
    """Change the URL, the event types, the description, or pause (`{"status": "paused"}`: deliveries are kept
    and sent on resume) and resume. With If-Match, only if nobody changed it since you read it (412)."""
    row = await service.get_subscription(session, webhook_id, lock=True)
    before = WebhookRead.model_validate(row)

    async def update() -> WebhookRead:
        return WebhookRead.model_validate(
            await service.update_subscription(session, row, body, request.app.state.settings)
        )

    return await write.update("webhook.update", "webhook", webhook_id, before, update)


@router.delete(
    "/{webhook_id}",
    summary="Delete a webhook subscription",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={**problem_responses(404, 412)},
)
async def delete_webhook(webhook_id: WebhookId, session: SessionDep, write: AuditedWrite) -> Response:
    """Delete a subscription: its pending deliveries are dropped, and its delivery log with it."""
    row = await service.get_subscription(session, webhook_id, lock=True)
    before = WebhookRead.model_validate(row)
    return await write.delete(
        "webhook.delete", "webhook", webhook_id, before, lambda: service.delete_subscription(session, row)
    )


@router.post(
    "/{webhook_id}/rotate-secret",
    summary="Rotate a subscription's signing secret",
    response_model=WebhookCreated,
    responses=problem_responses(404, 422),
)
async def rotate_webhook_secret(
    webhook_id: WebhookId,
    session: SessionDep,
    request: Request,
    body: Annotated[SecretRotation | None, Body(examples=[{"overlap_hours": 24}])] = None,
) -> WebhookCreated:
    """A new signing secret, shown this once. The previous one keeps signing as a second `v1` for
    `overlap_hours` (default 24), so receivers can switch without losing a delivery."""
    row = await service.get_subscription(session, webhook_id, lock=True)
    before = WebhookRead.model_validate(row)
    row, secret = await service.rotate_secret(
        session, row, body.overlap_hours if body else None, request.app.state.settings
    )
    rotated = WebhookRead.model_validate(row)
    await record_change(session, request, "webhook.rotate_secret", "webhook", webhook_id, before, rotated)
    return WebhookCreated(**rotated.model_dump(), secret=secret)


@router.get(
    "/{webhook_id}/deliveries",
    summary="List a subscription's deliveries",
    response_model=Page[DeliveryRead],
    responses=problem_responses(404, 422),
)
async def list_deliveries(
    webhook_id: WebhookId,
    session: SessionDep,
    page: PageParams,
    state: Annotated[
        DeliveryState | None, Query(description="Only deliveries in this state (dead: to redeliver).")
    ] = None,
) -> Page[DeliveryRead]:
    """The subscription's deliveries, newest first: state, attempts, last status or error, next attempt."""
    rows = await service.list_deliveries(session, webhook_id, state, page)
    return Page[DeliveryRead].of(rows, page, lambda row: DeliveryRead.model_validate(row._mapping))


@router.get(
    "/{webhook_id}/deliveries/{delivery_id}",
    summary="Get a delivery with its attempts",
    response_model=DeliveryDetail,
    responses=problem_responses(404),
)
async def get_delivery(webhook_id: WebhookId, delivery_id: DeliveryId, session: SessionDep) -> DeliveryDetail:
    """One delivery with its log: every attempt's time, duration and HTTP status or error class."""
    row, attempts = await service.get_delivery(session, webhook_id, delivery_id)
    return DeliveryDetail(**row._mapping, attempts_log=[AttemptRead.model_validate(a) for a in attempts])


@router.post(
    "/{webhook_id}/deliveries/{delivery_id}/redeliver",
    summary="Redeliver one delivery",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryRead,
    responses={202: {"headers": LOCATION_HEADER}, **problem_responses(404)},
)
async def redeliver(
    webhook_id: WebhookId, delivery_id: DeliveryId, session: SessionDep, request: Request, response: Response
) -> DeliveryRead:
    """Send one delivery again (dead, or delivered and lost by the receiver), due now with a fresh set of attempts,
    in its place in the customer's order. The same event id: receivers that saw it may drop it."""
    await service.redeliver(session, webhook_id, delivery_id)
    await record_change(
        session,
        request,
        "webhook.redeliver",
        "webhook",
        webhook_id,
        None,
        {"delivery_id": delivery_id},
    )
    row, _ = await service.get_delivery(session, webhook_id, delivery_id)
    response.headers["Location"] = f"/v1/webhooks/{webhook_id}/deliveries/{delivery_id}"
    return DeliveryRead.model_validate(row._mapping)


@router.post(
    "/{webhook_id}/deliveries/redeliver-dead",
    summary="Redeliver every dead delivery",
    response_model=RedeliveredCount,
    responses=problem_responses(404),
)
async def redeliver_dead(webhook_id: WebhookId, session: SessionDep, request: Request) -> RedeliveredCount:
    """Make every dead delivery of the subscription pending again, due now, each with a fresh set of attempts."""
    requeued = await service.redeliver_dead(session, webhook_id)
    await record_change(
        session,
        request,
        "webhook.redeliver_dead",
        "webhook",
        webhook_id,
        None,
        {"requeued": requeued},
    )
    return RedeliveredCount(requeued=requeued)
