"""HTTP routes for communities: the community document, invitations, the membership lifecycle, member activity
and metrics."""

from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app.audit import service as audit_service
from app.audit.writes import AuditedWrite
from app.core.db import SessionDep
from app.core.errors import InvalidInput, problem_responses
from app.core.etag import CONDITIONAL_GET_RESPONSES, CONDITIONAL_WRITE_RESPONSES, ConditionalGet
from app.core.idempotency import creates
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.strict import Timestamp
from app.customers import flows as customer_flows
from app.customers.schemas import ExternalIdPath
from app.engagement import communities as service
from app.engagement import metrics, programme_routes
from app.engagement.schemas.common import InvitationBatch, InvitationBatchResult
from app.engagement.schemas.communities import (
    CommunityCreate,
    CommunityMetrics,
    CommunityRead,
    CommunityState,
    CommunityUpdate,
    MemberActivityBatch,
    MemberActivityResult,
    MembershipMoveIn,
    MembershipMoveRead,
    MembershipRead,
    MembershipState,
)

router = APIRouter(prefix="/v1/communities", tags=["engagement"], responses=problem_responses(401, 403))

READ = [require_scope(Scope.ENGAGEMENT_READ)]
WRITE = [require_scope(Scope.ENGAGEMENT_WRITE)]
PARTICIPATE = [require_scope(Scope.PARTICIPATION_WRITE)]
KeyPath = Annotated[
    str, Path(alias="community_key", max_length=40, description="The community's key.", examples=["young-families"])
]
MAX_METRICS_WINDOW = timedelta(days=3660)


@creates(
    router,
    "",
    summary="Create a community",
    location="/v1/communities/{key}",
    audit=audit_service.created("community.create", "community", "key"),
    response_model=CommunityRead,
    dependencies=WRITE,
    responses=problem_responses(409, 422),
)
async def create_community(body: CommunityCreate, session: SessionDep) -> CommunityRead:
    """A community around a shared interest: who may be invited (`audience`, a condition in the rule language,
    and optionally tiers of a policy), its capacity and state (planned, open, closed). A key in use is a 409."""
    return CommunityRead.model_validate(await service.create_community(session, body))


@router.get(
    "",
    summary="List communities",
    response_model=Page[CommunityRead],
    dependencies=READ,
    responses=problem_responses(422),
)
async def list_communities(
    session: SessionDep, page: PageParams, state: CommunityState | None = None
) -> Page[CommunityRead]:
    """Communities in creation order, optionally of one state; follow `next_cursor`."""
    rows = await service.list_communities(session, state, page.after, page.limit)
    return Page[CommunityRead].of(rows, page, CommunityRead.model_validate)


@router.get(
    "/{community_key}",
    summary="Get a community",
    response_model=CommunityRead,
    dependencies=READ,
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(404)},
)
async def get_community(key: KeyPath, session: SessionDep, conditional: ConditionalGet) -> CommunityRead:
    """One community with its ETag."""
    return conditional.respond(CommunityRead.model_validate(await service.get_community(session, key)))


@router.patch(
    "/{community_key}",
    summary="Change a community",
    response_model=CommunityRead,
    dependencies=WRITE,
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(404, 422)},
)
async def update_community(
    key: KeyPath, body: CommunityUpdate, session: SessionDep, write: AuditedWrite
) -> CommunityRead:
    """Change fields of a community (omitted ones keep their values); open it (`{"state": "open"}`) to send
    invitations, close it to stop them. With If-Match, only if nobody changed it since you read it (412)."""
    return await programme_routes.change(
        session, write, service.COMMUNITY, key, CommunityRead, service.update_community, body
    )


@router.post(
    "/{community_key}/invitations",
    summary="Invite customers to a community",
    response_model=InvitationBatchResult,
    dependencies=WRITE,
    responses=problem_responses(404, 409, 422),
)
async def invite_to_community(
    key: KeyPath, body: InvitationBatch, session: SessionDep, request: Request
) -> InvitationBatchResult:
    """Invite customers to an open community. A customer is invited only when the audience admits them, they
    consent to marketing, and the contact policy (`/v1/contact-policy`) does not suppress them: an invitation is
    a contact, an unanswered one counts as an ignored impression and a declined one as a dismiss, per community
    (rules of scope `product`) and over every engagement programme (scope `category`). Each customer's outcome is
    listed; someone already invited or a member is not invited again (one who left or declined may be)."""
    return await programme_routes.invite(session, request, service.COMMUNITY, key, body, service.invite)


def _membership_read(key: str, external_id: str, membership, history=()) -> MembershipRead:
    return MembershipRead(
        customer_id=external_id,
        community_key=key,
        state=membership.state,
        channel=membership.channel,
        invited_at=membership.invited_at,
        joined_at=membership.joined_at,
        ended_at=membership.ended_at,
        history=[MembershipMoveRead.model_validate(move) for move in history],
    )


@router.get(
    "/{community_key}/members",
    summary="List a community's memberships",
    response_model=Page[MembershipRead],
    dependencies=READ,
    responses=problem_responses(404, 422),
)
async def list_members(
    key: KeyPath, session: SessionDep, page: PageParams, state: MembershipState | None = None
) -> Page[MembershipRead]:
    """Memberships (invited, joined, left, declined, removed) in the order invited; follow `next_cursor`."""
    community = await service.get_community(session, key)
    rows = await service.list_members(session, community, state, page.after, page.limit)
    return Page[MembershipRead].of(
        rows, page, lambda row: _membership_read(key, row[1], row[0]), key_of=lambda row: (row[0].id,)
    )


@router.get(
    "/{community_key}/members/{customer_id}",
    summary="Get a membership with its history",
    response_model=MembershipRead,
    dependencies=READ,
    responses=problem_responses(404),
)
async def get_member(key: KeyPath, customer_id: ExternalIdPath, session: SessionDep) -> MembershipRead:
    """A customer's membership and every move of it, with time and channel."""
    community = await service.get_community(session, key)
    membership, history = await service.get_membership(session, community, customer_id)
    return _membership_read(key, customer_id, membership, history)


@router.post(
    "/{community_key}/members/{customer_id}/transitions",
    summary="Join, decline or leave a community",
    response_model=MembershipRead,
    dependencies=PARTICIPATE,
    responses=problem_responses(404, 409, 422),
)
async def move_member(
    key: KeyPath, customer_id: ExternalIdPath, body: MembershipMoveIn, session: SessionDep
) -> MembershipRead:
    """The customer's answer: invited -> joined or declined, joined -> left (`removed` is the bank's:
    DELETE the membership). Joining a full or closed community is a 409. Each move keeps its time and channel and
    is a `community.membership_changed` webhook event; the customer's tiers are evaluated again."""
    community = await service.get_community(session, key)
    membership = await service.move_membership(session, community, customer_id, body.to_state, body.channel, body.at)
    await customer_flows.customers_changed(session, [membership.customer_id])
    membership, history = await service.get_membership(session, community, customer_id)
    return _membership_read(key, customer_id, membership, history)


@router.delete(
    "/{community_key}/members/{customer_id}",
    summary="Remove a member",
    response_model=MembershipRead,
    dependencies=WRITE,
    responses=problem_responses(404, 409),
)
async def remove_member(
    key: KeyPath, customer_id: ExternalIdPath, session: SessionDep, request: Request
) -> MembershipRead:
    """Remove an invited customer or a member (the bank's decision; audited). The history is kept."""
    community = await service.get_community(session, key)
    membership = await service.move_membership(session, community, customer_id, "removed", "bank", None)
    await customer_flows.customers_changed(session, [membership.customer_id])
    await programme_routes.audit(
        session, request, service.COMMUNITY, "remove_member", key, None, {"membership_id": membership.id}
    )
    membership, history = await service.get_membership(session, community, customer_id)
    return _membership_read(key, customer_id, membership, history)


@router.post(
    "/{community_key}/activity-events",
    summary="Record member activity",
    response_model=MemberActivityResult,
    dependencies=PARTICIPATE,
    responses=problem_responses(404, 413, 422),
)
async def record_member_activity(key: KeyPath, body: MemberActivityBatch, session: SessionDep) -> MemberActivityResult:
    """Posts, replies, attended meetings and shares of members (1..1000 per batch). Each event is stored once per
    `event_id` (a retry changes nothing); an event of a customer who was not a member when it happened is
    listed under `rejections` and the others are stored."""
    community = await service.get_community(session, key)
    result, customers = await service.record_activity(session, community, body.events)
    await customer_flows.customers_changed(session, customers)
    return MemberActivityResult(**result)


@router.get(
    "/{community_key}/metrics",
    summary="Community metrics",
    response_model=CommunityMetrics,
    response_model_by_alias=True,
    dependencies=READ,
    responses=problem_responses(404, 422),
)
async def community_metrics(
    key: KeyPath,
    session: SessionDep,
    from_: Annotated[Timestamp | None, Query(alias="from", description="Start (default: 30 days before `to`).")] = None,
    to: Annotated[Timestamp | None, Query(description="End, exclusive (default: now).")] = None,
) -> CommunityMetrics:
    """Members at `to`, joins and leaves in [from, to), members active in the 30 days before `to` and stickiness
    (active / members), NPS and CSAT of members against non-members of the same tiers (under the audience's
    policy, else `loyalty`) from the surveys in [from, to), and the members' tier migrations since each joined."""
    to = to or datetime.now(UTC)
    from_ = from_ or to - timedelta(days=30)
    if from_ >= to:
        raise InvalidInput("from", "must be before `to`", location="query")
    if to - from_ > MAX_METRICS_WINDOW:
        raise InvalidInput("from", "the window is at most ten years", location="query")
    community = await service.get_community(session, key)
    return CommunityMetrics.model_validate(await metrics.community_metrics(session, community, from_, to))
