"""The contact policy's outcome stored with the offer state (app/recommendations/queries.py, CONTACT_STORED): a
request reads it while it holds, and every way it can change ends it: a write to what the policy counts (feedback,
an answer to an impression, invitations, managers' contacts: the triggers of migration d3c0ffee0059, whatever code
writes), time (an outcome leaving a rule's window, a rest ending), a change of the policy, and a write that commits
while a request is counting it."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import create_sessionmaker, driver_connection
from app.recommendations.catalog import build_snapshot
from tests.factories import serve_list
from tests.feedback.helpers import event
from tests.recommendations.test_contact_policy import _invited_to_a_programme, _shown, _suppressed, shipped
from tests.recommendations.test_offer_state import ARGUMENTS, _computed, _waiting_on_a_lock, committed
from tests.recommendations.test_recommendations import make_customer

__all__ = ["committed", "shipped"]  # fixtures


async def _stored(session, external_id: str):
    """The contact outcome stored with the customer's offer state (None: no state)."""
    return (
        await session.execute(
            text(
                "SELECT s.contact_keys, s.contact_rules, s.contact_from, s.contact_until, s.contact_generation "
                "FROM customer_offer_state s JOIN customer c ON c.id = s.customer_id WHERE c.external_id = :e"
            ),
            {"e": external_id},
        )
    ).one_or_none()


async def _read_twice(client, as_role, session, external_id: str) -> dict[str, str]:
    """What the contact policy suppresses, asked until it is stored with the state (a state just computed has none
    stored), then once more: that answer read from the outcome stored."""
    first = await _suppressed(client, as_role, external_id)
    stored = await _stored(session, external_id)
    if stored.contact_until is None:
        assert await _suppressed(client, as_role, external_id) == first
        stored = await _stored(session, external_id)
    assert stored.contact_until is not None, "the outcome was not stored with the state"
    assert await _suppressed(client, as_role, external_id) == first
    assert (await _stored(session, external_id)).contact_from == stored.contact_from, "counted again"
    return first


async def test_feedback_after_an_outcome_was_stored_changes_it(client, as_role, session, shipped):
    await make_customer(client, as_role, "CS1", risk=5)
    assert await _read_twice(client, as_role, session, "CS1") == {}
    assert (await _stored(session, "CS1")).contact_keys is None
    await _shown(session, "CS1", "equity_fund", 3, "dismiss")  # by plain SQL: the trigger clears the stored outcome
    assert (await _stored(session, "CS1")).contact_until is None
    assert await _read_twice(client, as_role, session, "CS1") == {"equity_fund": "dismissed"}
    stored = await _stored(session, "CS1")
    assert (stored.contact_keys, stored.contact_rules) == (["product:equity_fund"], ["dismissed"])


async def test_an_answer_to_an_ignored_impression_ends_its_rest(client, as_role, session, shipped):
    await make_customer(client, as_role, "CS2", risk=5)
    for days_ago in (9, 6, 3):
        await _shown(session, "CS2", "bond_fund", days_ago)
    assert await _read_twice(client, as_role, session, "CS2") == {"bond_fund": "ignored-three-times"}
    # a click on the last impression's item, later: that impression was not ignored after all
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'CS2'"))
    rid = await session.scalar(
        text(
            "SELECT recommendation_id FROM feedback_event WHERE customer_id = :c AND kind = 'impression' "
            "ORDER BY occurred_at DESC LIMIT 1"
        ),
        {"c": customer_id},
    )
    await session.execute(
        text(
            "INSERT INTO feedback_event (customer_id, event_id, recommendation_id, product_code, channel, strategy, "
            "kind, occurred_at) VALUES (:c, :e, :r, 'bond_fund', 'mobile', 'personalised', 'click', now())"
        ),
        {"c": customer_id, "e": str(uuid.uuid4()), "r": rid},
    )
    await session.commit()
    assert await _read_twice(client, as_role, session, "CS2") == {}


async def test_feedback_through_the_intake_changes_a_stored_outcome(client, as_role, session, shipped):
    await make_customer(client, as_role, "CS3", risk=5)
    assert await _read_twice(client, as_role, session, "CS3") == {}
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'CS3'"))
    [rid] = await serve_list(session, customer_id, ["balanced_fund"], score="0", propensity="0")
    await session.commit()
    sent = await client.post(
        "/v1/feedback/events",
        json={"events": [event("cs3-1", rid, "CS3", "dismiss")]},
        headers=as_role("app"),
    )
    assert sent.status_code < 300 and not sent.json()["rejections"], sent.text
    assert await _read_twice(client, as_role, session, "CS3") == {"balanced_fund": "dismissed"}


async def test_invitations_and_a_manager_s_contact_after_an_outcome_was_stored_change_it(
    client, as_role, session, shipped
):
    await make_customer(client, as_role, "CS4", risk=5)
    await _invited_to_a_programme(client, as_role, "CS4", "salon_1")
    await _invited_to_a_programme(client, as_role, "CS4", "salon_2")
    assert await _read_twice(client, as_role, session, "CS4") == {}
    contact = await client.post(
        "/v1/customers/CS4/contacts",
        json={"kind": "call", "channel": "phone", "outcome": "declined"},
        headers=as_role("admin"),
    )
    assert contact.status_code == 201, contact.text
    assert set((await _read_twice(client, as_role, session, "CS4")).values()) == {"category-fatigue"}


async def test_a_change_of_the_policy_ends_every_stored_outcome(client, as_role, session, shipped):
    await make_customer(client, as_role, "CS5", risk=5)
    await _shown(session, "CS5", "equity_fund", 3, "dismiss")
    assert await _read_twice(client, as_role, session, "CS5") == {"equity_fund": "dismissed"}
    await session.execute(text("UPDATE contact_rule SET suppress_days = 2 WHERE name = 'dismissed'"))
    await session.commit()
    assert await _read_twice(client, as_role, session, "CS5") == {}


async def test_a_stored_outcome_ends_when_a_rest_ends_or_an_outcome_leaves_a_window(
    app, client, as_role, session, shipped
):
    """Asked at later times (the recommender's `now`): the stored outcome is read while it holds, and counted again
    from the first instant at which the answer could change."""
    await make_customer(client, as_role, "CS6", risk=5)
    await _shown(session, "CS6", "equity_fund", 50, "dismiss")  # rests 60 days: 10 more
    for days_ago in (25, 20, 15):  # three dismissals of funds in 90 days: the category rests 90 days from the last
        await _shown(session, "CS6", "bond_fund", days_ago + 60, "dismiss")
    recommender, connection = app.state.recommender, await driver_connection(session)
    start = datetime.now(UTC)

    async def suppressed(days: float) -> dict[str, str]:
        result = await recommender.recommend(
            connection,
            "CS6",
            channel="mobile",
            limit=10,
            explain=True,
            explore=False,
            record=False,
            now=start + timedelta(days=days),
        )
        return {
            f["product_code"]: f["detail"].rsplit("rule ", 1)[1].rstrip(")")
            for f in result.filtered
            if f["filter"] == "contact_policy"
        }

    funds = {"equity_fund": "category-fatigue", "bond_fund": "category-fatigue", "balanced_fund": "category-fatigue"}
    assert await suppressed(0) == funds
    assert await suppressed(1) == funds  # read from the state
    assert (await _stored(session, "CS6")).contact_until < start + timedelta(days=10)
    # day 12: the equity fund's dismissal left the 'dismissed' rule's window (60 days), and one of the three
    # fund dismissals the category's (90 days): nothing rests any more
    assert await suppressed(12) == {}
    assert await suppressed(13) == {}
    assert await suppressed(0) == funds  # an earlier time is never read from an outcome counted later


async def test_an_outcome_counted_while_a_write_commits_is_not_stored(committed):
    """A request counting the outcome before a dismissal commits answers from what it read, and stores nothing (the
    write moved the state's contact generation on): the next request counts the dismissal."""
    url, pool = committed
    engine = create_async_engine(url)
    try:
        await pool.execute(
            "INSERT INTO contact_rule (name, outcome, threshold, window_days, scope, channel, suppress_days) "
            "VALUES ('dismissed', 'dismiss', 1, 60, 'product', NULL, 60)"
        )
        async with create_sessionmaker(engine)() as session:
            snapshot = await build_snapshot(session)
        customer_id = await pool.fetchval("SELECT id FROM customer WHERE external_id = 'RC1'")
        await _computed(pool, snapshot, "RC1")  # the state, no outcome stored
        arguments = {**ARGUMENTS, "explain": True}

        async def read():
            return await pool.fetchrow(*snapshot.state_query("RC1", now=datetime.now(UTC), **arguments))

        async def count():
            return await pool.fetchrow(*snapshot.contact_query("RC1", now=datetime.now(UTC), **arguments))

        assert not (await read())["contact_known"]
        async with create_sessionmaker(engine)() as writer:
            await writer.execute(
                text(
                    "INSERT INTO feedback_event (customer_id, event_id, recommendation_id, product_code, channel, "
                    "strategy, kind, occurred_at) VALUES (:c, 'e1', :r, 'bond_fund', 'mobile', 'personalised', "
                    "'dismiss', now())"
                ),
                {"c": customer_id, "r": uuid.uuid4()},
            )
            counting = asyncio.create_task(count())
            await _waiting_on_a_lock(pool, counting)  # its store waits for the writer's row
            await writer.commit()
            row = await counting
        assert row["codes"] == ["bond_fund"]  # it read before the write committed
        assert not (await read())["contact_known"]  # and stored nothing
        assert (await count())["filtered_by"] == ["contact_policy"]
        row = await read()
        assert row["contact_known"] and row["filtered_by"] == ["contact_policy"]
    finally:
        await engine.dispose()
