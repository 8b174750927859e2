"""HTTP routes for referrals: recorded with their referee (a customer, or a pending code), moved to onboarded and
active; only active (converted) referrals count in the referrer's advocacy attributes."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response, status

from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.idempotency import creates
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.strict import BIGINT_MAX, ParamInteger
from app.customers import flows as customer_flows
from app.customers.schemas import ExternalId
from app.engagement import referrals as service
from app.engagement.schemas.referrals import ReferralIn, ReferralMoveIn, ReferralRead

router = APIRouter(prefix="/v1/referrals", tags=["engagement"], responses=problem_responses(401, 403))

ReferralId = Annotated[ParamInteger(1, BIGINT_MAX), Path(description="The referral's id.", examples=[1])]


@creates(
    router,
    "",
    summary="Record a referral",
    location="/v1/referrals/{id}",
    response_model=ReferralRead,
    dependencies=[require_scope(Scope.PARTICIPATION_WRITE)],
    responses={200: {"model": ReferralRead, "description": "Already recorded (a retry)"}, **problem_responses(422)},
)
async def record_referral(body: ReferralIn, session: SessionDep, response: Response) -> ReferralRead:
    """A customer referred a friend: another customer (`referee_customer_id`) or someone not yet a customer, named
    by the `referral_code` they were given. 201 when new, 200 for a retry of the same `event_id`. It counts in the
    referrer's `referrals_converted_12m` and `advocacy_score` only once active."""
    referral_id, created = await service.record_referral(session, body)
    if not created:
        response.status_code = status.HTTP_200_OK
    return ReferralRead.model_validate(service.as_read(await service.get_referral(session, referral_id)))


@router.post(
    "/{referral_id}/transitions",
    summary="Move a referral",
    response_model=ReferralRead,
    dependencies=[require_scope(Scope.PARTICIPATION_WRITE)],
    responses=problem_responses(404, 409, 422),
)
async def move_referral(referral_id: ReferralId, body: ReferralMoveIn, session: SessionDep) -> ReferralRead:
    """referred -> onboarded (the referee is a customer now: name them when the referral carried a code) ->
    active (converted: it now counts). Any other move is a 409. The referrer's tiers are evaluated again."""
    referrer = await service.move_referral(session, referral_id, body)
    await customer_flows.customers_changed(session, [referrer])
    return ReferralRead.model_validate(service.as_read(await service.get_referral(session, referral_id)))


@router.get(
    "",
    summary="List referrals",
    response_model=Page[ReferralRead],
    dependencies=[require_scope(Scope.ENGAGEMENT_READ)],
    responses=problem_responses(422),
)
async def list_referrals(
    session: SessionDep,
    page: PageParams,
    referrer: Annotated[ExternalId | None, Query(description="Only this referrer's referrals.")] = None,
) -> Page[ReferralRead]:
    """Referrals in the order recorded; follow `next_cursor`."""
    rows = await service.list_referrals(session, referrer, page.after, page.limit)
    return Page[ReferralRead].of(
        rows, page, lambda row: ReferralRead.model_validate(service.as_read(row)), key_of=lambda row: (row[0].id,)
    )


@router.get(
    "/{referral_id}",
    summary="Get a referral",
    response_model=ReferralRead,
    dependencies=[require_scope(Scope.ENGAGEMENT_READ)],
    responses=problem_responses(404),
)
async def get_referral(referral_id: ReferralId, session: SessionDep) -> ReferralRead:
    """One referral with its status and times."""
    return ReferralRead.model_validate(service.as_read(await service.get_referral(session, referral_id)))
