"""HTTP routes for feedback: recommendation events, survey answers and complaints."""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request, Response, status

from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.idempotency import creates
from app.core.pagination import CursorParam, LimitParam, Page, PageRequest, decode_cursor
from app.core.security import CurrentPrincipal, Scope, require_scope
from app.core.strict import BIGINT_MAX, ParamInteger, Timestamp
from app.customers import flows as customer_flows
from app.customers.schemas import ExternalId
from app.feedback import complaints, service
from app.feedback.models import Complaint
from app.feedback.schemas import (
    ComplaintCategory,
    ComplaintDetail,
    ComplaintIn,
    ComplaintRead,
    ComplaintStatus,
    ComplaintTransitionIn,
    ComplaintTransitionRead,
    FeedbackBatchResult,
    FeedbackEventBatch,
    SurveyIn,
    SurveyKind,
    SurveyRead,
)
from app.products import quotas

router = APIRouter(prefix="/v1/feedback", tags=["feedback"], responses=problem_responses(401, 403))

WRITE = [require_scope(Scope.FEEDBACK_WRITE)]
READ = [require_scope(Scope.FEEDBACK_READ)]  # survey comments and complaints: the customers' own words
SurveyId = Annotated[ParamInteger(1, BIGINT_MAX), Path(description="The survey answer's id.", examples=[7])]
ComplaintId = Annotated[ParamInteger(1, BIGINT_MAX), Path(description="The complaint's id.", examples=[42])]
CustomerFilter = Annotated[ExternalId | None, Query(alias="customer_id", description="The bank's customer id.")]


def _by_row_id(row) -> tuple[int]:
    """The page key of a (row, customer external id) pair the feedback lists fetch."""
    return (row[0].id,)


def _complaint_read(complaint: Complaint, external_id: str) -> dict:
    return {
        **{
            c: getattr(complaint, c)
            for c in (
                "id",
                "event_id",
                "category",
                "channel",
                "description",
                "status",
                "opened_at",
                "resolved_at",
                "updated_at",
            )
        },
        "customer_id": external_id,
    }


@router.post(
    "/events",
    summary="Record recommendation feedback",
    response_model=FeedbackBatchResult,
    dependencies=WRITE,
    responses=problem_responses(413, 422),
)
async def ingest_feedback_events(
    body: FeedbackEventBatch, session: SessionDep, request: Request, background: BackgroundTasks
) -> FeedbackBatchResult:
    """Record what customers did with recommended products: impression, click, accept, dismiss, convert.
    Each event answers a `recommendation_id` served to that customer. Events are checked one by one: a bad event
    is listed under `rejections` (its index, field and why) and the good ones are stored. A retried event_id
    changes nothing, also when retries race. A conversion records the product as held (balance 0) if it is not,
    and the customer's tiers are evaluated again; a conversion counts against the product's quota, if it has one
    (each customer once per period: see PUT /v1/products/{product_code}/quota)."""
    intake = await service.ingest_feedback(session, body.indexed_events)
    await customer_flows.customers_changed(session, intake.converted_customers)
    await quotas.record_conversions(session, intake.conversions)  # after the customers' locks, as every writer
    if intake.accepted:  # once committed, this instance ranks with the new counts at once (others within seconds)
        background.add_task(request.app.state.recommender.invalidate_stats)
    rejections = sorted(body.rejections + intake.rejections, key=lambda r: r["index"])
    return FeedbackBatchResult(
        received=len(body.indexed_events) + len(body.rejections),
        accepted=intake.accepted,
        duplicates=intake.duplicates,
        rejected=len(rejections),
        rejections=rejections,
    )


@creates(
    router,
    "/surveys",
    summary="Record a survey answer",
    location="/v1/feedback/surveys/{id}",
    response_model=SurveyRead,
    dependencies=WRITE,
    responses={200: {"model": SurveyRead, "description": "Already recorded (a retry)"}, **problem_responses(422)},
)
async def record_survey(body: SurveyIn, session: SessionDep, response: Response) -> SurveyRead:
    """Record an NPS (0..10) or CSAT (1..5) answer: 201 when new, 200 for a retry of the same `event_id`. The
    latest NPS, promoter / detractor status and the average CSAT become customer attributes (nps_latest,
    is_promoter, is_detractor, csat_avg) and the customer's tiers are evaluated again."""
    survey, customer_id, created = await service.record_survey(session, body)
    if created:
        await customer_flows.customers_changed(session, [customer_id])
    else:
        response.status_code = status.HTTP_200_OK
    return _survey_read(survey, body.customer_id)


def _survey_read(survey, external_id: str) -> SurveyRead:
    return SurveyRead.model_validate(
        {**{c.key: getattr(survey, c.key) for c in survey.__table__.c}, "customer_id": external_id}
    )


@router.get(
    "/surveys",
    summary="List survey answers",
    response_model=Page[SurveyRead],
    dependencies=READ,
    responses=problem_responses(422),
)
async def list_surveys(
    session: SessionDep,
    cursor: CursorParam = None,
    limit: LimitParam = 50,
    customer: CustomerFilter = None,
    kind: SurveyKind | None = None,
) -> Page[SurveyRead]:
    """Survey answers with their comments, in the order received; follow `next_cursor`."""
    page = PageRequest(decode_cursor(cursor), limit)
    rows = await service.list_surveys(session, page, customer=customer, kind=kind)
    return Page[SurveyRead].of(rows, page, lambda row: _survey_read(*row), key_of=_by_row_id)


@router.get(
    "/surveys/{survey_id}",
    summary="Get a survey answer",
    response_model=SurveyRead,
    dependencies=READ,
    responses=problem_responses(404),
)
async def get_survey(survey_id: SurveyId, session: SessionDep) -> SurveyRead:
    """One survey answer with its comment."""
    return _survey_read(*await service.get_survey(session, survey_id))


@creates(
    router,
    "/complaints",
    summary="Open a complaint",
    location="/v1/feedback/complaints/{id}",
    response_model=ComplaintDetail,
    dependencies=WRITE,
    responses={200: {"model": ComplaintDetail, "description": "Already open (a retry)"}, **problem_responses(422)},
)
async def open_complaint(
    body: ComplaintIn, session: SessionDep, principal: CurrentPrincipal, response: Response
) -> ComplaintDetail:
    """Open a complaint: 201 when new, 200 for a retry of the same `event_id`. Open complaints count in the
    customer's `open_complaints` attribute (rules use it) and the customer's tiers are evaluated again."""
    complaint_id, customer_id, created = await complaints.open_complaint(session, body, principal.name)
    if created:
        await customer_flows.customers_changed(session, [customer_id])
    else:
        response.status_code = status.HTTP_200_OK
    return await _detail(session, complaint_id)


async def _detail(session, complaint_id: int) -> ComplaintDetail:
    complaint, external_id, history = await complaints.get_complaint(session, complaint_id)
    return ComplaintDetail(
        **_complaint_read(complaint, external_id), history=[ComplaintTransitionRead.model_validate(h) for h in history]
    )


@router.get(
    "/complaints",
    summary="List complaints",
    response_model=Page[ComplaintRead],
    dependencies=READ,
    responses=problem_responses(422),
)
async def list_complaints(
    session: SessionDep,
    cursor: CursorParam = None,
    limit: LimitParam = 50,
    customer: CustomerFilter = None,
    status_: Annotated[ComplaintStatus | None, Query(alias="status")] = None,
    category: ComplaintCategory | None = None,
    opened_from: Annotated[Timestamp | None, Query(description="Opened at or after.")] = None,
    opened_to: Annotated[Timestamp | None, Query(description="Opened before.")] = None,
) -> Page[ComplaintRead]:
    """Complaints in the order opened, filtered by customer, status, category and opening time; follow
    `next_cursor` for the next page."""
    page = PageRequest(decode_cursor(cursor), limit)
    rows = await complaints.list_complaints(
        session,
        page,
        customer=customer,
        status=status_,
        category=category,
        opened_from=opened_from,
        opened_to=opened_to,
    )
    return Page[ComplaintRead].of(rows, page, lambda row: ComplaintRead(**_complaint_read(*row)), key_of=_by_row_id)


@router.get(
    "/complaints/{complaint_id}",
    summary="Get a complaint with its history",
    response_model=ComplaintDetail,
    dependencies=READ,
    responses=problem_responses(404),
)
async def get_complaint(complaint_id: ComplaintId, session: SessionDep) -> ComplaintDetail:
    """A complaint with its history: every move with actor, note and time."""
    return await _detail(session, complaint_id)


@creates(
    router,
    "/complaints/{complaint_id}/transitions",
    status_code=status.HTTP_200_OK,
    location="/v1/feedback/complaints/{id}",
    summary="Move a complaint to another status",
    response_model=ComplaintDetail,
    dependencies=[require_scope(Scope.COMPLAINTS_WRITE)],
    responses=problem_responses(404, 409, 422),
)
async def move_complaint(
    complaint_id: ComplaintId, body: ComplaintTransitionIn, session: SessionDep, principal: CurrentPrincipal
) -> ComplaintDetail:
    """Move a complaint: open -> in_progress -> resolved -> closed, open -> resolved, and back to open (reopen)
    from in_progress, resolved or closed. Any other move is a 409. The actor is the API key's name."""
    customer_id = await complaints.move_complaint(session, complaint_id, body.to_status, body.note, principal.name)
    await customer_flows.customers_changed(session, [customer_id])
    return await _detail(session, complaint_id)
