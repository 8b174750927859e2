"""HTTP routes for activities: salons, lectures, appreciation events and campaigns; invitations, RSVPs with a
waiting list, attendance and results."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app.audit import service as audit_service
from app.audit.writes import AuditedWrite
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.etag import CONDITIONAL_GET_RESPONSES, PATCH_RESPONSES, ConditionalGet
from app.core.idempotency import creates
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.strict import ParamInteger
from app.customers import flows as customer_flows
from app.customers.schemas import ExternalIdPath
from app.engagement import activities as service
from app.engagement import programme_routes, results
from app.engagement.schemas.activities import (
    ActivityCreate,
    ActivityKind,
    ActivityRead,
    ActivityResults,
    ActivityUpdate,
    AttendanceBatch,
    AttendanceResult,
    ParticipationRead,
    ParticipationState,
    RsvpIn,
)
from app.engagement.schemas.common import InvitationBatch, InvitationBatchResult

router = APIRouter(prefix="/v1/activities", tags=["engagement"], responses=problem_responses(401, 403))

READ = [require_scope(Scope.ENGAGEMENT_READ)]
WRITE = [require_scope(Scope.ENGAGEMENT_WRITE)]
PARTICIPATE = [require_scope(Scope.PARTICIPATION_WRITE)]
KeyPath = Annotated[
    str, Path(alias="activity_key", max_length=40, description="The activity's key.", examples=["pensions_explained"])
]


def _participation_read(key: str, external_id: str, p) -> ParticipationRead:
    return ParticipationRead(
        customer_id=external_id,
        activity_key=key,
        state=p.state,
        channel=p.channel,
        invited_at=p.invited_at,
        responded_at=p.responded_at,
        waitlisted_at=p.waitlisted_at,
        attended_at=p.attended_at,
    )


@creates(
    router,
    "",
    summary="Create an activity",
    location="/v1/activities/{key}",
    audit=audit_service.created("activity.create", "activity", "key"),
    response_model=ActivityRead,
    dependencies=WRITE,
    responses=problem_responses(409, 422),
)
async def create_activity(body: ActivityCreate, session: SessionDep) -> ActivityRead:
    """A salon, lecture, appreciation event or campaign: who may be invited (`audience`, a condition in the rule
    language, and optionally tiers of a policy), channel, capacity, schedule and the codes of the benefits it
    grants (codes of the benefit catalogue, GET /v1/benefits: a code not in it is a 422 naming it). A key in use is
    a 409."""
    return ActivityRead.model_validate(await service.create_activity(session, body))


@router.get(
    "",
    summary="List activities",
    response_model=Page[ActivityRead],
    dependencies=READ,
    responses=problem_responses(422),
)
async def list_activities(
    session: SessionDep, page: PageParams, kind: ActivityKind | None = None
) -> Page[ActivityRead]:
    """Activities in creation order, optionally of one kind; follow `next_cursor`."""
    rows = await service.list_activities(session, kind, page.after, page.limit)
    return Page[ActivityRead].of(rows, page, ActivityRead.model_validate)


@router.get(
    "/{activity_key}",
    summary="Get an activity",
    response_model=ActivityRead,
    dependencies=READ,
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(404)},
)
async def get_activity(key: KeyPath, session: SessionDep, conditional: ConditionalGet) -> ActivityRead:
    """One activity with its ETag."""
    return conditional.respond(ActivityRead.model_validate(await service.get_activity(session, key)))


@router.patch(
    "/{activity_key}",
    summary="Change an activity",
    response_model=ActivityRead,
    dependencies=WRITE,
    responses={**PATCH_RESPONSES, **problem_responses(404, 422)},
)
async def update_activity(key: KeyPath, body: ActivityUpdate, session: SessionDep, write: AuditedWrite) -> ActivityRead:
    """Change the name, owner team, capacity (below the places given: a 409 naming it), schedule (an end before
    the stored start: a 409) or benefit codes (each in the benefit catalogue, else a 422 naming it). With
    If-Match, only if nobody changed it since you read it (412)."""
    return await programme_routes.change(
        session, write, service.ACTIVITY, key, ActivityRead, service.update_activity, body
    )


@router.post(
    "/{activity_key}/invitations",
    summary="Invite customers to an activity",
    response_model=InvitationBatchResult,
    dependencies=WRITE,
    responses=problem_responses(404, 409, 422),
)
async def invite_to_activity(
    key: KeyPath, body: InvitationBatch, session: SessionDep, request: Request
) -> InvitationBatchResult:
    """Invite customers: only those the audience admits, who consent to marketing and whom the contact policy
    does not suppress (as for communities: an unanswered invitation is an ignored impression, a declined one a
    dismiss). Each customer's outcome is listed."""
    return await programme_routes.invite(session, request, service.ACTIVITY, key, body, service.invite)


@router.post(
    "/{activity_key}/participants/{customer_id}/rsvp",
    summary="Answer an invitation",
    response_model=ParticipationRead,
    dependencies=PARTICIPATE,
    responses=problem_responses(404, 409, 422),
)
async def rsvp(key: KeyPath, customer_id: ExternalIdPath, body: RsvpIn, session: SessionDep) -> ParticipationRead:
    """Accept: a place while there is one (`accepted`), else the waiting list (`waitlisted`); the capacity is never
    exceeded, however many answers race. Decline: a place freed goes at once to the first on the waiting list.
    Answering again the same is harmless; an answer after the activity ended is a 409."""
    activity = await service.get_activity(session, key)
    participation, changed = await service.rsvp(session, activity, customer_id, body.answer, body.channel)
    await customer_flows.customers_changed(session, changed)
    return _participation_read(key, customer_id, participation)


@router.post(
    "/{activity_key}/attendance",
    summary="Record attendance",
    response_model=AttendanceResult,
    dependencies=WRITE,
    responses=problem_responses(404, 422),
)
async def record_attendance(
    key: KeyPath, body: AttendanceBatch, session: SessionDep, request: Request
) -> AttendanceResult:
    """Mark participants who held a place attended or no_show; anyone else is listed under `rejections`."""
    activity = await service.get_activity(session, key)
    result, changed = await service.record_attendance(session, activity, body.records)
    await customer_flows.customers_changed(session, changed)
    await programme_routes.audit(
        session, request, service.ACTIVITY, "attendance", key, None, {k: result[k] for k in ("attended", "no_show")}
    )
    return AttendanceResult(**result)


@router.get(
    "/{activity_key}/participants",
    summary="List an activity's participants",
    response_model=Page[ParticipationRead],
    dependencies=READ,
    responses=problem_responses(404, 422),
)
async def list_participants(
    key: KeyPath, session: SessionDep, page: PageParams, state: ParticipationState | None = None
) -> Page[ParticipationRead]:
    """Invitations and their answers in the order invited, optionally of one state; follow `next_cursor`."""
    activity = await service.get_activity(session, key)
    rows = await service.list_participants(session, activity, state, page.after, page.limit)
    return Page[ParticipationRead].of(
        rows, page, lambda row: _participation_read(key, row[1], row[0]), key_of=lambda row: (row[0].id,)
    )


@router.get(
    "/{activity_key}/participants/{customer_id}",
    summary="Get a participant",
    response_model=ParticipationRead,
    dependencies=READ,
    responses=problem_responses(404),
)
async def get_participant(key: KeyPath, customer_id: ExternalIdPath, session: SessionDep) -> ParticipationRead:
    """One customer's invitation and answer."""
    activity = await service.get_activity(session, key)
    participation, external_id = await service.get_participation(session, activity, customer_id)
    return _participation_read(key, external_id, participation)


@router.get(
    "/{activity_key}/results",
    summary="Activity results",
    response_model=ActivityResults,
    dependencies=READ,
    responses=problem_responses(404, 422),
)
async def activity_results(
    key: KeyPath,
    session: SessionDep,
    request: Request,
    days: Annotated[
        ParamInteger(1, 365), Query(description="Products taken within this many days after attending count.")
    ] = 90,
) -> ActivityResults:
    """Invited, accepted, attended; satisfaction from surveys whose touchpoint is `activity_<key>`; products taken
    within `days` after attending against a matched group that was not invited (exact strata of segment, tier under
    the primary policy and age decade, reweighted to the attendees), with the difference's 95% interval."""
    activity = await service.get_activity(session, key)
    primary = request.app.state.settings.primary_policy
    return ActivityResults.model_validate(await results.activity_results(session, activity, days, primary))
