"""Activity operations: the activity document, invitations (screened by app/engagement/audience.py), RSVPs with a
waiting list, and attendance. Flush, never commit.

Capacity: every change of who holds a place (an accept, a decline of a place, a promotion) locks the activity row
first, so places are counted and given one transaction at a time and never exceed the capacity, however many RSVPs
race; a place freed is given in the same transaction to the first on the waiting list."""

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.benefits import service as benefits_service
from app.core.errors import Conflict
from app.core.patching import Patch
from app.customers.models import Customer
from app.engagement import programmes
from app.engagement.errors import ActivityNotFound, InvalidMove, MembershipNotFound
from app.engagement.models import Activity, ActivityParticipation
from app.engagement.schemas.activities import ActivityCreate, ActivityUpdate, AttendanceIn
from app.webhooks import outbox

HOLDS_A_PLACE = ("accepted", "attended", "no_show")


ACTIVITY = programmes.ProgrammeKind(Activity, "activity", ActivityNotFound, ActivityParticipation)


async def get_activity(session: AsyncSession, key: str, *, lock: bool = False) -> Activity:
    return await programmes.get(session, ACTIVITY, key, lock=lock)


async def create_activity(session: AsyncSession, body: ActivityCreate) -> Activity:
    """A new activity; its benefit codes must be in the benefit catalogue (422 at /benefit_codes/<i>)."""
    return await programmes.create(
        session, ACTIVITY, body, lambda: benefits_service.check_codes(session, body.benefit_codes, "/benefit_codes")
    )


async def update_activity(session: AsyncSession, activity: Activity, body: ActivityUpdate) -> Activity:
    """Change fields: the schedule stays in order, the capacity not below the places given, the benefit codes in
    the benefit catalogue."""
    patch = Patch.of(activity, body)
    changes = patch.changes
    programmes.refuse_nulls(changes, list(changes))  # every field may be left out, none nulled
    if patch["ends_at"] <= patch["starts_at"]:
        raise patch.refusal("/ends_at", "must be after starts_at", reads=("starts_at", "ends_at"))
    if "capacity" in changes:
        held = await _places_held(session, activity.id)
        if changes["capacity"] < held:  # the places given are stored state: a 409
            raise patch.refusal("/capacity", f"{held} places are already given")
    if "benefit_codes" in changes:
        await benefits_service.check_codes(session, changes["benefit_codes"], "/benefit_codes")
    return await programmes.apply_changes(session, activity, changes)


async def list_activities(session: AsyncSession, kind: str | None, after: int | None, limit: int) -> list:
    return await programmes.list_page(session, ACTIVITY, "kind", kind, after, limit)


async def _places_held(session: AsyncSession, activity_id: int) -> int:
    return await session.scalar(
        text("SELECT count(*) FROM activity_participation WHERE activity_id = :id AND state = ANY(:states)"),
        {"id": activity_id, "states": list(HOLDS_A_PLACE)},
    )


_INVITE = text(f"""
WITH invited AS (
    INSERT INTO activity_participation (activity_id, customer_id, state, channel, invited_at)
    SELECT :programme_id, id, 'invited', :channel, :now FROM unnest(CAST(:ids AS bigint[])) AS t(id) ORDER BY id
    ON CONFLICT (activity_id, customer_id) DO NOTHING
    RETURNING customer_id
), events AS (
    {outbox.INSERT_SQL}
    SELECT 'activity.participation_changed', i.customer_id,
           jsonb_build_object('activity_key', cast(:key AS text), 'customer_id', cu.external_id, 'from_state', null,
                              'to_state', 'invited', 'at', cast(:now AS timestamptz))
    FROM invited i JOIN customer cu ON cu.id = i.customer_id
)
SELECT customer_id FROM invited
""")


async def invite(session: AsyncSession, activity: Activity, external_ids: list[str], channel: str) -> list[dict]:
    """Invite customers to an activity not over yet (app/engagement/programmes.py: screened, each customer's
    outcome)."""
    if activity.ends_at <= datetime.now(UTC):
        raise Conflict(f"activity '{activity.key}' is over")
    return await programmes.invite(session, ACTIVITY, activity, external_ids, channel, _INVITE)


async def _participation(
    session: AsyncSession, activity: Activity, external_id: str
) -> tuple[ActivityParticipation, str]:
    row = (
        await session.execute(
            select(ActivityParticipation, Customer.external_id)
            .join(Customer, Customer.id == ActivityParticipation.customer_id)
            .where(
                ActivityParticipation.activity_id == activity.id,
                Customer.external_id == external_id,
                Customer.erased_at.is_(None),
            )
            .with_for_update(of=ActivityParticipation)
        )
    ).first()
    if row is None:
        raise MembershipNotFound(activity.key)
    return row[0], row[1]


async def _moved(
    session: AsyncSession, activity: Activity, participation: ActivityParticipation, external_id: str, to: str, at
) -> None:
    from_state = participation.state
    participation.state, participation.updated_at = to, datetime.now(UTC)
    await session.flush()
    await outbox.emit(
        session,
        "activity.participation_changed",
        {"activity_key": activity.key, "customer_id": external_id, "from_state": from_state, "to_state": to, "at": at},
        customer_id=participation.customer_id,
    )


async def rsvp(
    session: AsyncSession, activity: Activity, external_id: str, answer: str, channel: str
) -> tuple[ActivityParticipation, list[int]]:
    """Accept (a place, or the waiting list when full) or decline (a place freed goes to the first waiting);
    (the participation, the customers whose state changed)."""
    now = datetime.now(UTC)
    if activity.ends_at <= now:
        raise Conflict(f"activity '{activity.key}' is over")
    activity = await get_activity(session, activity.key, lock=True)  # places are given one transaction at a time
    participation, external_id = await _participation(session, activity, external_id)
    changed = [participation.customer_id]
    if answer == "accept":
        if participation.state in ("accepted", "waitlisted"):
            return participation, []  # a retry
        if participation.state not in ("invited", "declined"):
            raise InvalidMove(participation.state, "accepted")
        to = "accepted" if await _places_held(session, activity.id) < activity.capacity else "waitlisted"
        participation.responded_at, participation.channel = now, channel
        participation.waitlisted_at = now if to == "waitlisted" else None
        await _moved(session, activity, participation, external_id, to, now)
        return participation, changed
    if participation.state == "declined":
        return participation, []
    if participation.state not in ("invited", "accepted", "waitlisted"):
        raise InvalidMove(participation.state, "declined")
    freed = participation.state == "accepted"
    participation.responded_at, participation.channel, participation.waitlisted_at = now, channel, None
    await _moved(session, activity, participation, external_id, "declined", now)
    if freed:
        changed += await _promote(session, activity, now)
    return participation, changed


async def _promote(session: AsyncSession, activity: Activity, now: datetime) -> list[int]:
    """Give free places to the first on the waiting list (the activity row is locked)."""
    free = activity.capacity - await _places_held(session, activity.id)
    if free <= 0:
        return []
    rows = (
        await session.execute(
            select(ActivityParticipation, Customer.external_id)
            .join(Customer, Customer.id == ActivityParticipation.customer_id)
            .where(ActivityParticipation.activity_id == activity.id, ActivityParticipation.state == "waitlisted")
            .order_by(ActivityParticipation.waitlisted_at, ActivityParticipation.id)
            .limit(free)
            .with_for_update(of=ActivityParticipation)
        )
    ).all()
    for participation, external_id in rows:
        participation.waitlisted_at = None
        await _moved(session, activity, participation, external_id, "accepted", now)
    return [p.customer_id for p, _ in rows]


async def record_attendance(
    session: AsyncSession, activity: Activity, records: list[AttendanceIn]
) -> tuple[dict[str, Any], list[int]]:
    """Mark accepted participants attended or no_show (at the activity's start); others are rejected by index."""
    counts, rejections, changed = {"attended": 0, "no_show": 0}, [], []
    for index, record in enumerate(records):
        try:
            participation, external_id = await _participation(session, activity, record.customer_id)
        except MembershipNotFound:
            rejections.append({"index": index, "pointer": f"/records/{index}/customer_id", "detail": "not invited"})
            continue
        to = "attended" if record.attended else "no_show"
        if participation.state not in HOLDS_A_PLACE:
            rejections.append(
                {"index": index, "pointer": f"/records/{index}", "detail": f"{participation.state}: holds no place"}
            )
            continue
        counts[to] += 1
        if participation.state != to:
            participation.attended_at = activity.starts_at if to == "attended" else None
            await _moved(session, activity, participation, external_id, to, datetime.now(UTC))
            changed.append(participation.customer_id)
    result = {**counts, "rejected": len(rejections), "rejections": rejections}
    return result, changed


async def list_participants(
    session: AsyncSession, activity: Activity, state: str | None, after: int | None, limit: int
) -> list:
    return await programmes.list_taking_part(session, ACTIVITY, activity, state, after, limit)


async def get_participation(session: AsyncSession, activity: Activity, external_id: str):
    return await _participation(session, activity, external_id)
