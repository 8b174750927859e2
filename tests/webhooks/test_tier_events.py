"""Tier events: tier.upgraded, tier.downgraded and tier.at_risk are written to the outbox by the assignment statement
itself, in the transaction of the tier change (a write to a customer, a batch run, an override), and reach a real
receiver on loopback, signed. A rolled-back change leaves no event."""

from datetime import date, timedelta

from sqlalchemy import text

from app.tiering import runs
from app.webhooks.delivery import DeliveryWorker
from tests.factories import WEALTH_GRACE_DAYS as GRACE
from tests.tiering.test_assignment import make_customer, set_balance

TIER_EVENTS = ("tier.upgraded", "tier.downgraded", "tier.at_risk")


async def _events(session, after: int = 0) -> list[tuple[str, str, dict]]:
    """(event type, customer's external id, payload) of the tier events after outbox id `after`, in outbox order."""
    rows = await session.execute(
        text(
            "SELECT e.event_type, c.external_id, e.payload FROM webhook_event e "
            "JOIN customer c ON c.id = e.customer_id WHERE e.event_type LIKE 'tier.%' AND e.id > :after ORDER BY e.id"
        ),
        {"after": after},
    )
    return [tuple(row) for row in rows]


async def _last_event_id(session) -> int:
    return await session.scalar(text("SELECT coalesce(max(id), 0) FROM webhook_event"))


async def test_an_upgrade_by_a_customer_write_is_delivered_signed_to_a_receiver(
    client, as_role, wealth, session, sessionmaker, fast, receiver
):
    hook = await client.post(
        "/v1/webhooks", headers=as_role("admin"), json={"url": receiver.url, "event_types": list(TIER_EVENTS)}
    )
    assert hook.status_code == 201, hook.text
    receiver.secret = hook.json()["secret"]
    await make_customer(client, as_role, "W1", "60000.00")  # a first assignment (mass), then gold
    assert [(kind, payload["to_tier"]) for kind, _, payload in await _events(session)] == [("tier.upgraded", "gold")]
    start = await _last_event_id(session)
    await session.execute(text("UPDATE webhook_event SET fanned_out_at = now()"))  # that one is not the point here
    await session.commit()
    await set_balance(client, as_role, "W1", "700000.00")  # gold -> wealth, at once
    events = await _events(session, start)
    assert [(kind, customer) for kind, customer, _ in events] == [("tier.upgraded", "W1")]
    payload = events[0][2]
    assert {k: payload[k] for k in ("customer_id", "policy_key", "from_tier", "to_tier", "reason")} == {
        "customer_id": "W1",
        "policy_key": "wealth",
        "from_tier": "gold",
        "to_tier": "wealth",
        "reason": "rules",
    }
    # The worker (driven step by step, on the test's transaction) fans it out and POSTs it to the receiver.
    worker = DeliveryWorker(fast, sessionmaker)
    try:
        assert await worker.fan_out() == 1
        claims = await worker.claim(10)
        assert [claim.event_type for claim in claims] == ["tier.upgraded"]
        assert await worker.deliver(claims[0]) == "delivered"
    finally:
        await worker.client.aclose()
    [received] = receiver.delivered()
    assert received.verified and received.event_type == "tier.upgraded"
    assert received.body["type"] == "tier.upgraded" and received.body["data"]["to_tier"] == "wealth"
    assert received.body["data"]["customer_id"] == "W1"


async def test_at_risk_then_downgrade_after_grace_in_order_and_once(client, as_role, wealth, session):
    await make_customer(client, as_role, "D1", "700000.00")
    start = await _last_event_id(session)
    await set_balance(client, as_role, "D1", "100.00")  # no longer qualifies: at risk, downgrade in GRACE days
    await set_balance(client, as_role, "D1", "90.00")  # still in grace: no second at-risk
    events = await _events(session, start)
    assert [(kind, customer) for kind, customer, _ in events] == [("tier.at_risk", "D1")]
    assert events[0][2] == {
        "customer_id": "D1",
        "policy_key": "wealth",
        "tier": "wealth",
        "downgrade_to": "mass",
        "downgrade_on": (date.today() + timedelta(days=GRACE)).isoformat(),
    }
    await session.execute(
        text("UPDATE tier_assignment SET lower_since = lower_since - make_interval(days => :d)"), {"d": GRACE + 1}
    )
    await session.commit()
    evaluated = await client.post("/v1/customers/D1/tiers/evaluate", headers=as_role("integration"))
    assert evaluated.status_code == 200, evaluated.text
    events = await _events(session, start)
    assert [kind for kind, _, _ in events] == ["tier.at_risk", "tier.downgraded"]
    downgraded = events[1][2]
    assert (downgraded["from_tier"], downgraded["to_tier"], downgraded["reason"]) == ("wealth", "mass", "grace_elapsed")


async def test_a_write_rolled_back_leaves_no_event(client, as_role, wealth, session, connection):
    await make_customer(client, as_role, "B1", "60000.00")
    start = await _last_event_id(session)
    await connection.execute(text("SAVEPOINT before_write"))
    await set_balance(client, as_role, "B1", "700000.00")  # the write commits (its savepoint) with its event
    assert [kind for kind, _, _ in await _events(session, start)] == ["tier.upgraded"]
    await connection.execute(text("ROLLBACK TO SAVEPOINT before_write"))  # ...and is undone
    assert await _events(session, start) == []
    tier = await session.scalar(text("SELECT tier_code FROM tier_assignment a JOIN customer c ON c.id = a.customer_id"))
    assert tier == "gold"


async def test_override_set_and_removed_emit_the_moves_of_the_tier_the_customer_has(client, as_role, wealth, session):
    await make_customer(client, as_role, "P1", "60000.00")
    start = await _last_event_id(session)
    pinned = await client.put(
        "/v1/customers/P1/tiers/wealth/override", headers=as_role("admin"), json={"tier": "private", "reason": "VIP"}
    )
    assert pinned.status_code in (200, 204), pinned.text
    await set_balance(client, as_role, "P1", "700000.00")  # the rules say wealth, the override holds private
    removed = await client.delete("/v1/customers/P1/tiers/wealth/override", headers=as_role("admin"))
    assert removed.status_code in (200, 204), removed.text
    events = await _events(session, start)
    assert [(kind, payload["from_tier"], payload["to_tier"], payload["reason"]) for kind, _, payload in events] == [
        ("tier.upgraded", "gold", "private", "override"),
        ("tier.downgraded", "private", "wealth", "override_removed"),
    ]
    assert [payload["policy_key"] for _, _, payload in events] == ["wealth", "wealth"]
    assert not any("policy" in payload for _, _, payload in events)


async def test_a_tier_run_writes_one_event_per_change(client, as_role, wealth, session, sessionmaker):
    customers = [f"R{i:02d}" for i in range(24)]
    for external_id in customers:
        await make_customer(client, as_role, external_id, "60000.00")  # everyone gold
    start = await _last_event_id(session)
    # Behind the service's back (as a nightly load would): a third qualify for wealth, a third for nothing above mass.
    await session.execute(
        text(
            "UPDATE customer_aum_daily d SET aum = CASE WHEN right(c.external_id, 2)::int % 3 = 0 THEN aum * 20 "
            "ELSE aum / 100 END FROM customer c WHERE c.id = d.customer_id AND right(c.external_id, 2)::int % 3 < 2"
        )
    )
    await session.commit()
    async with sessionmaker() as s:
        run = await runs.start_run(s, None, "cron")
        await s.commit()
    await runs.execute_run(sessionmaker, run.id, chunk_size=5)  # several chunks
    run, _ = await runs.get_run(session, run.id)
    assert run.status == "succeeded", run.error
    events = await _events(session, start)
    upgraded = sorted(customer for kind, customer, _ in events if kind == "tier.upgraded")
    at_risk = sorted(customer for kind, customer, _ in events if kind == "tier.at_risk")
    assert upgraded == [c for c in customers if int(c[1:]) % 3 == 0] and run.upgrades == len(upgraded) == 8
    assert at_risk == [c for c in customers if int(c[1:]) % 3 == 1] and len(at_risk) == 8
    assert len(events) == 16  # one per change, none for the unchanged third
    ids = await session.scalars(
        text("SELECT customer_id FROM webhook_event WHERE id > :after ORDER BY id"), {"after": start}
    )
    ids = list(ids)
    assert ids == sorted(ids)  # written in customer order, chunk after chunk
    # A second run changes nothing and writes nothing.
    async with sessionmaker() as s:
        again = await runs.start_run(s, None, "cron")
        await s.commit()
    await runs.execute_run(sessionmaker, again.id, chunk_size=5)
    assert len(await _events(session, start)) == 16


async def test_an_override_that_expires_emits_the_move_back_to_the_rules_tier(client, as_role, wealth, session):
    await make_customer(client, as_role, "X1", "60000.00")
    pinned = await client.put(
        "/v1/customers/X1/tiers/wealth/override", headers=as_role("admin"), json={"tier": "private", "reason": "VIP"}
    )
    assert pinned.status_code in (200, 204), pinned.text
    await session.execute(text("UPDATE tier_assignment SET override_expires_at = now() - interval '1 day'"))
    await session.commit()
    start = await _last_event_id(session)
    await set_balance(client, as_role, "X1", "61000.00")  # any write: the expired override is cleared
    events = await _events(session, start)
    assert [(kind, payload["from_tier"], payload["to_tier"], payload["reason"]) for kind, _, payload in events] == [
        ("tier.downgraded", "private", "gold", "override_expired")
    ]
    assert events[0][2]["policy_key"] == "wealth" and "policy" not in events[0][2]


async def test_erasure_takes_the_external_id_out_of_the_customer_s_events(client, as_role, wealth, session):
    await make_customer(client, as_role, "E1", "700000.00")
    await set_balance(client, as_role, "E1", "100.00")  # upgraded, then at risk: events naming E1
    assert {customer for _, customer, _ in await _events(session)} == {"E1"}
    erased = await client.delete("/v1/customers/E1", headers=as_role("admin"))
    assert erased.status_code == 204, erased.text
    rows = (await session.execute(text("SELECT payload->>'customer_id' FROM webhook_event"))).scalars().all()
    pseudonym = await session.scalar(text("SELECT external_id FROM customer"))
    assert rows and set(rows) == {pseudonym} and pseudonym != "E1"
