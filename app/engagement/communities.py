"""Community operations: the community document, invitations (screened by app/engagement/audience.py), the
membership lifecycle with its history, and member activity events. Flush, never commit."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, InvalidInput
from app.engagement import audience as audience_check
from app.engagement import programmes
from app.engagement.errors import CommunityNotFound, InvalidMove, MembershipNotFound
from app.engagement.models import Community, CommunityMembership, CommunityMembershipMove
from app.engagement.schemas.communities import CommunityCreate, CommunityUpdate, MemberActivityIn
from app.webhooks import outbox

MEMBERSHIP_MOVES = {
    "invited": {"joined", "declined", "removed"},
    "joined": {"left", "removed"},
}


COMMUNITY = programmes.ProgrammeKind(Community, "community", CommunityNotFound, CommunityMembership)


async def get_community(session: AsyncSession, key: str, *, lock: bool = False) -> Community:
    return await programmes.get(session, COMMUNITY, key, lock=lock)


async def create_community(session: AsyncSession, body: CommunityCreate) -> Community:
    return await programmes.create(session, COMMUNITY, body)


async def update_community(session: AsyncSession, community: Community, body: CommunityUpdate) -> Community:
    """Change fields; the audience and its policy and tiers are replaced together."""
    changes = body.model_dump(exclude_unset=True)
    programmes.refuse_nulls(changes, ("name", "owner_team", "state"))
    if "audience" in changes:
        if body.audience is None:
            raise InvalidInput("/audience", "must not be null")
        policy, tiers = changes.get("audience_policy_key"), changes.get("audience_tiers") or []
        if bool(policy) != bool(tiers):
            raise InvalidInput("/audience_tiers", "audience_policy_key and audience_tiers go together")
        changes["audience"] = await audience_check.checked_audience(session, body.audience, policy, tiers)
        changes["audience_policy_key"], changes["audience_tiers"] = policy, tiers
    elif "audience_policy_key" in changes or "audience_tiers" in changes:
        raise InvalidInput("/audience", "send the audience with its policy and tiers")
    return await programmes.apply_changes(session, community, changes)


async def list_communities(session: AsyncSession, state: str | None, after: int | None, limit: int) -> list:
    return await programmes.list_page(session, COMMUNITY, "state", state, after, limit)


def _invited_event(key_sql: str) -> str:
    """The payload of community.membership_changed built in SQL (for outbox.INSERT_SQL statements)."""
    return (
        f"jsonb_build_object('community_key', {key_sql}, 'customer_id', cu.external_id, 'from_state', "
        "pr.state, 'to_state', 'invited', 'channel', cast(:channel AS text), 'at', cast(:now AS timestamptz))"
    )


# Invite the screened customers: a new membership, or a membership that was left or declined invited again; each
# invitation a move and a webhook event, in the one statement.
_INVITE = text(f"""
WITH prior AS (
    SELECT customer_id, state FROM community_membership
    WHERE community_id = :programme_id AND customer_id = ANY(:ids)
), invited AS (
    INSERT INTO community_membership AS m (community_id, customer_id, state, channel, invited_at)
    SELECT :programme_id, id, 'invited', :channel, :now FROM unnest(CAST(:ids AS bigint[])) AS t(id) ORDER BY id
    ON CONFLICT (community_id, customer_id) DO UPDATE SET state = 'invited', channel = excluded.channel,
        invited_at = excluded.invited_at, joined_at = NULL, ended_at = NULL, updated_at = now()
    WHERE m.state IN ('left', 'declined')
    RETURNING id, customer_id
), moves AS (
    INSERT INTO community_membership_move (customer_id, membership_id, community_id, from_state, to_state, channel, at)
    SELECT i.customer_id, i.id, :programme_id, pr.state, 'invited', :channel, :now
    FROM invited i LEFT JOIN prior pr USING (customer_id)
), events AS (
    {outbox.INSERT_SQL}
    SELECT 'community.membership_changed', i.customer_id, {_invited_event("cast(:key AS text)")}
    FROM invited i LEFT JOIN prior pr USING (customer_id) JOIN customer cu ON cu.id = i.customer_id
)
SELECT customer_id FROM invited
""")


async def invite(
    session: AsyncSession, community: Community, external_ids: list[str], channel: str
) -> list[dict[str, Any]]:
    """Invite customers to an open community (app/engagement/programmes.py: screened, each customer's outcome)."""
    if community.state != "open":
        raise Conflict(f"community '{community.key}' is {community.state}: invitations go out only when open")
    return await programmes.invite(session, COMMUNITY, community, external_ids, channel, _INVITE)


async def move_membership(
    session: AsyncSession, community: Community, external_id: str, to: str, channel: str, at: datetime | None
) -> CommunityMembership:
    """Move a membership (invited -> joined/declined/removed, joined -> left/removed), with its history row and a
    webhook event. Joining a full or closed community is a 409 (the community row is locked: capacity holds)."""
    customer_id = (await programmes.customer_ids(session, [external_id])).get(external_id)
    if customer_id is None:
        raise MembershipNotFound(community.key)
    if to == "joined":
        await get_community(session, community.key, lock=True)
        if community.state != "open":
            raise Conflict(f"community '{community.key}' is {community.state}")
    membership = await session.scalar(
        select(CommunityMembership)
        .where(CommunityMembership.community_id == community.id, CommunityMembership.customer_id == customer_id)
        .with_for_update()
    )
    if membership is None:
        raise MembershipNotFound(community.key)
    if to not in MEMBERSHIP_MOVES.get(membership.state, set()):
        raise InvalidMove(membership.state, to)
    if to == "joined" and community.capacity is not None:
        members = await session.scalar(
            text("SELECT count(*) FROM community_membership WHERE community_id = :id AND state = 'joined'"),
            {"id": community.id},
        )
        if members >= community.capacity:
            raise Conflict(f"community '{community.key}' is full ({community.capacity} members)")
    at = at or datetime.now(UTC)
    from_state = membership.state
    membership.state, membership.channel, membership.updated_at = to, channel, datetime.now(UTC)
    if to == "joined":
        membership.joined_at = at
    elif from_state == "joined":
        membership.ended_at = at
    session.add(
        CommunityMembershipMove(
            customer_id=membership.customer_id,
            membership_id=membership.id,
            community_id=community.id,
            from_state=from_state,
            to_state=to,
            channel=channel,
            at=at,
        )
    )
    await session.flush()
    await outbox.emit(
        session,
        "community.membership_changed",
        {
            "community_key": community.key,
            "customer_id": external_id,
            "from_state": from_state,
            "to_state": to,
            "channel": channel,
            "at": at,
        },
        customer_id=customer_id,
    )
    return membership


async def get_membership(session: AsyncSession, community: Community, external_id: str) -> tuple:
    customer_id = (await programmes.customer_ids(session, [external_id])).get(external_id)
    membership = None
    if customer_id is not None:
        membership = await session.scalar(
            select(CommunityMembership).where(
                CommunityMembership.community_id == community.id, CommunityMembership.customer_id == customer_id
            )
        )
    if membership is None:
        raise MembershipNotFound(community.key)
    history = (
        await session.scalars(
            select(CommunityMembershipMove)
            .where(
                CommunityMembershipMove.customer_id == membership.customer_id,
                CommunityMembershipMove.membership_id == membership.id,
            )
            .order_by(CommunityMembershipMove.id)
        )
    ).all()
    return membership, list(history)


async def list_members(
    session: AsyncSession, community: Community, state: str | None, after: int | None, limit: int
) -> list:
    return await programmes.list_taking_part(session, COMMUNITY, community, state, after, limit)


# A batch of member activity: stored once per (customer, community, event_id), only for customers who were members
# when it happened; the rest reported by index.
_ACTIVITY = text("""
WITH incoming AS (
    SELECT * FROM unnest(CAST(:idx AS int[]), CAST(:external_ids AS text[]), CAST(:event_ids AS text[]),
                         CAST(:kinds AS text[]), CAST(:occurred AS timestamptz[]))
           AS t(idx, external_id, event_id, kind, occurred_at)
), checked AS (
    SELECT i.*, cu.id AS customer_id,
           (m.joined_at IS NOT NULL AND m.joined_at <= i.occurred_at
            AND (m.ended_at IS NULL OR i.occurred_at <= m.ended_at)) AS was_member
    FROM incoming i
    LEFT JOIN customer cu ON cu.external_id = i.external_id AND cu.erased_at IS NULL
    LEFT JOIN community_membership m ON m.community_id = :community_id AND m.customer_id = cu.id
), inserted AS (
    INSERT INTO community_activity_event (community_id, customer_id, event_id, kind, occurred_at)
    SELECT :community_id, customer_id, event_id, kind, occurred_at FROM checked
    WHERE was_member ORDER BY event_id
    ON CONFLICT (customer_id, community_id, event_id) DO NOTHING
    RETURNING customer_id
)
SELECT (SELECT count(*) FROM inserted) AS accepted,
       ARRAY(SELECT DISTINCT customer_id FROM inserted) AS customers,
       ARRAY(SELECT idx FROM checked WHERE customer_id IS NULL) AS unknown,
       ARRAY(SELECT idx FROM checked WHERE customer_id IS NOT NULL AND NOT coalesce(was_member, false)) AS not_member
""")


async def record_activity(
    session: AsyncSession, community: Community, events: list[MemberActivityIn]
) -> tuple[dict[str, Any], list[int]]:
    """Store a batch of member activity; (the batch result, the customers with new events)."""
    row = (
        await session.execute(
            _ACTIVITY,
            {
                "community_id": community.id,
                "idx": list(range(len(events))),
                "external_ids": [e.customer_id for e in events],
                "event_ids": [e.event_id for e in events],
                "kinds": [e.kind for e in events],
                "occurred": [e.occurred_at for e in events],
            },
        )
    ).one()
    rejections = [
        {"index": i, "pointer": f"/events/{i}/customer_id", "detail": "unknown customer"} for i in row.unknown
    ] + [
        {"index": i, "pointer": f"/events/{i}/customer_id", "detail": "not a member of the community at that time"}
        for i in row.not_member
    ]
    rejections.sort(key=lambda r: r["index"])
    result = {
        "received": len(events),
        "accepted": row.accepted,
        "duplicates": len(events) - len(rejections) - row.accepted,
        "rejected": len(rejections),
        "rejections": rejections,
    }
    return result, sorted(row.customers)
