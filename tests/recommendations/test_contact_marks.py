"""The contact marks (app/recommendations/contact_suppression.py): kept by triggers in the transaction that writes a
contact, so the next request counts it; the statement counts a customer's outcomes only for a marked customer
(tests/recommendations/test_contact_policy.py holds every rule through the four kinds of contact, each written by
its own path, which now reaches the count only through a mark)."""

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import create_sessionmaker
from app.recommendations.catalog import build_snapshot
from app.recommendations.contact_suppression import SUPPRESSION_SQL
from app.recommendations.queries import FAST_PATH_LOCKS
from tests.recommendations.test_contact_policy import _suppressed, shipped  # noqa: F401 (a fixture)
from tests.recommendations.test_offer_state import _computed, _read, committed  # noqa: F401 F811 (a fixture)
from tests.recommendations.test_recommendations import make_customer, recommend

_MARK = text(
    "SELECT m.last_contact_at FROM customer_contact_mark m JOIN customer c ON c.id = m.customer_id "
    "WHERE c.external_id = :e"
)


async def test_the_installed_function_counts_as_the_code_does(session):
    """The migration installed `SUPPRESSION_SQL` as it stands: a change to one without the other fails here."""
    body = await session.scalar(
        text("SELECT prosrc FROM pg_proc WHERE oid = 'contact_suppression(bigint, timestamptz)'::regprocedure")
    )
    assert SUPPRESSION_SQL.strip() in body


async def _feedback(client, as_role, external_id: str, recommendation_id: str, kind: str, at: datetime) -> None:
    event = {
        "event_id": uuid.uuid4().hex,
        "recommendation_id": recommendation_id,
        "customer_id": external_id,
        "type": kind,
        "occurred_at": at.isoformat(),
    }
    response = await client.post("/v1/feedback/events", json={"events": [event]}, headers=as_role("app"))
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text


async def test_a_dismissal_marks_the_customer_and_the_next_request_rests_the_product(
    client,
    as_role,
    session,
    shipped,  # noqa: F811
):
    await make_customer(client, as_role, "CM1", risk=5)
    listed = await recommend(client, as_role, "CM1")
    first = listed["items"][0]
    assert await session.scalar(_MARK, {"e": "CM1"}) is None  # served, never contacted: no mark, nothing counted
    assert await _suppressed(client, as_role, "CM1") == {}

    clicked_at = datetime.now(UTC) - timedelta(hours=2)
    await _feedback(client, as_role, "CM1", first["recommendation_id"], "click", clicked_at)
    assert await session.scalar(_MARK, {"e": "CM1"}) is None  # engagement is no contact outcome

    dismissed_at = datetime.now(UTC) - timedelta(hours=1)
    await _feedback(client, as_role, "CM1", first["recommendation_id"], "dismiss", dismissed_at)
    assert await session.scalar(_MARK, {"e": "CM1"}) == dismissed_at  # the intake's own transaction marked it
    code = first["product"]["product_code"]
    assert await _suppressed(client, as_role, "CM1") == {code: "dismissed"}  # the very next request

    # an older contact reported late does not move the mark back
    await _feedback(client, as_role, "CM1", first["recommendation_id"], "impression", dismissed_at - timedelta(days=3))
    assert await session.scalar(_MARK, {"e": "CM1"}) == dismissed_at


async def test_a_programme_invitation_and_a_manager_contact_mark_the_customer(session):
    """Written by any code (here plain SQL), an invitation or a contact marks its customer at its time, an update
    that moves it later moves the mark."""
    customer_id = await session.scalar(
        text("INSERT INTO customer (external_id, segment, onboarded_at) VALUES ('CM2', 'retail', now()) RETURNING id")
    )
    invited_at = datetime(2026, 11, 2, 9, tzinfo=UTC)
    await session.execute(
        text("INSERT INTO community (key, name, owner_team, audience) VALUES ('cm_club', 'Club', 'wealth', '{}')")
    )
    await session.execute(
        text(
            "INSERT INTO community_membership (customer_id, community_id, channel, invited_at, state) "
            "SELECT :c, id, 'mobile', :at, 'invited' FROM community WHERE key = 'cm_club'"
        ),
        {"c": customer_id, "at": invited_at},
    )
    mark = text("SELECT last_contact_at FROM customer_contact_mark WHERE customer_id = :c")
    assert await session.scalar(mark, {"c": customer_id}) == invited_at
    later = invited_at + timedelta(days=5)
    await session.execute(
        text("UPDATE community_membership SET invited_at = :at WHERE customer_id = :c"), {"c": customer_id, "at": later}
    )
    assert await session.scalar(mark, {"c": customer_id}) == later
    await session.rollback()


async def test_reading_a_state_locks_no_more_relations_than_the_fast_path_holds(committed):  # noqa: F811
    """A request whose state holds, for a customer never contacted, locks each relation through the fast path:
    none goes to the shared lock table that concurrent requests contend for (app/recommendations/queries.py)."""
    url, pool = committed
    engine = create_async_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            snapshot = await build_snapshot(session)
    finally:
        await engine.dispose()
    assert await _computed(pool, snapshot, "RC1") is not None  # computes and stores the state
    async with pool.acquire() as connection:
        for _ in range(6):  # as a served connection runs it: its plan generic from the sixth execution on (a
            await _read(connection, snapshot, "RC1")  # custom plan's planning locks every index of every table)
        async with connection.transaction():  # its locks are the statement's
            row = await _read(connection, snapshot, "RC1")
            assert row is not None and row["codes"] == ["bond_fund"]  # the state was read, with its candidate
            locked = await connection.fetch(
                "SELECT relation::regclass::text AS name, fastpath FROM pg_locks "
                "WHERE pid = pg_backend_pid() AND locktype = 'relation' AND relation <> 'pg_locks'::regclass"
            )
    assert len(locked) <= FAST_PATH_LOCKS, sorted(r["name"] for r in locked)
    assert all(r["fastpath"] for r in locked)
