"""Tier assignment through HTTP: refresh on data change, explanation, grace, overrides, the change feed, batch
runs that agree with one-by-one evaluation, lists by tier and the care calendar."""

import random
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text

from app.customers import retier
from app.tiering import runs
from app.tiering.assignment.compile import assign
from tests.factories import WEALTH_GRACE_DAYS as GRACE
from tests.factories import customer_body, day_in


async def make_customer(client, as_role, external_id: str, balance: str, **profile) -> None:
    response = await client.put(
        f"/v1/customers/{external_id}", json=customer_body(**profile), headers=as_role("integration")
    )
    assert response.status_code in (200, 201), response.text
    await set_balance(client, as_role, external_id, balance)


async def set_balance(client, as_role, external_id: str, balance: str) -> None:
    response = await client.put(
        f"/v1/customers/{external_id}/holdings",
        headers=as_role("integration"),
        json={"holdings": [{"product_code": "savings_account", "balance": balance, "as_of": date.today().isoformat()}]},
    )
    assert response.status_code == 200, response.text


async def tier_of(client, as_role, external_id: str, policy: str = "wealth") -> dict:
    response = await client.get(f"/v1/customers/{external_id}/tiers", headers=as_role("app"))
    assert response.status_code == 200, response.text
    return next(t for t in response.json()["tiers"] if t["policy_key"] == policy)


async def feed(client, as_role, after=None, limit=100) -> dict:
    params = {"limit": limit, **({"cursor": after} if after else {})}
    response = await client.get("/v1/tier-transitions", params=params, headers=as_role("integration"))
    assert response.status_code == 200, response.text
    return response.json()


async def test_tier_refreshes_when_holdings_change_and_is_explained(client, as_role, wealth):
    await make_customer(client, as_role, "A1", "10000.00")
    assert (await tier_of(client, as_role, "A1"))["tier"] == "mass"
    await set_balance(client, as_role, "A1", "620000.00")
    tier = await tier_of(client, as_role, "A1")
    assert tier["tier"] == "wealth" and tier["policy_version"] == 1 and tier["at_risk"] is False
    tried = tier["explanation"]
    assert [t["tier"] for t in tried] == ["private", "wealth"]
    assert tried[0]["matched"] is False and tried[1]["matched"] is True
    aum = tried[1]["conditions"][0]
    assert aum == {
        "pointer": "/tiers/1/condition/all/0",
        "attribute": "aum_avg_3m",
        "operator": "gte",
        "threshold": 500000,
        "value": "620000.00",
        "result": True,
    }
    assert tried[1]["conditions"][1]["attribute"] == "tenure_months" and tried[1]["conditions"][1]["result"]


async def test_upgrade_applies_at_once_and_downgrade_waits_for_grace_period(client, as_role, wealth, session):
    await make_customer(client, as_role, "G1", "60000.00")
    assert (await tier_of(client, as_role, "G1"))["tier"] == "gold"
    await set_balance(client, as_role, "G1", "700000.00")
    assert (await tier_of(client, as_role, "G1"))["tier"] == "wealth"  # upgrade: at once
    await set_balance(client, as_role, "G1", "100.00")
    held = await tier_of(client, as_role, "G1")
    assert held["tier"] == "wealth" and held["qualified_tier"] == "mass"
    assert held["at_risk"] is True and held["downgrade_to"] == "mass"
    assert held["downgrade_on"] == (date.today() + timedelta(days=GRACE)).isoformat()
    retention = await client.get(
        "/v1/customers", params={"policy_key": "wealth", "at_risk": "true"}, headers=as_role("admin")
    )
    assert [c["customer_id"] for c in retention.json()["items"]] == ["G1"]
    # The grace period passes without the customer qualifying again: the downgrade applies.
    await session.execute(
        text("UPDATE tier_assignment SET lower_since = lower_since - make_interval(days => :d)"), {"d": GRACE + 1}
    )
    await session.commit()
    evaluated = await client.post("/v1/customers/G1/tiers/evaluate", headers=as_role("integration"))
    assert evaluated.status_code == 200
    after = await tier_of(client, as_role, "G1")
    assert after["tier"] == "mass" and after["at_risk"] is False
    history = (await client.get("/v1/customers/G1/tiers/history", headers=as_role("app"))).json()["items"]
    assert [(h["from_tier"], h["to_tier"], h["direction"], h["reason"]) for h in history] == [
        (None, "mass", "initial", "rules"),
        ("mass", "gold", "upgrade", "rules"),
        ("gold", "wealth", "upgrade", "rules"),
        ("wealth", "mass", "downgrade", "grace_elapsed"),
    ]


async def test_qualifying_again_within_grace_cancels_the_downgrade(client, as_role, wealth):
    await make_customer(client, as_role, "R1", "700000.00")
    await set_balance(client, as_role, "R1", "1000.00")
    assert (await tier_of(client, as_role, "R1"))["at_risk"] is True
    await set_balance(client, as_role, "R1", "800000.00")
    tier = await tier_of(client, as_role, "R1")
    assert tier["tier"] == "wealth" and tier["at_risk"] is False and tier["downgrade_on"] is None


async def test_override_applies_until_it_expires_without_anyone_acting(client, as_role, wealth, session):
    await make_customer(client, as_role, "O1", "1000.00")
    bad = await client.put(
        "/v1/customers/O1/tiers/wealth/override",
        headers=as_role("admin"),
        json={"tier": "platinum", "reason": "no such tier"},
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/tier"
    forbidden = await client.put(
        "/v1/customers/O1/tiers/wealth/override", headers=as_role("app"), json={"tier": "private", "reason": "VIP"}
    )
    assert forbidden.status_code == 403
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    response = await client.put(
        "/v1/customers/O1/tiers/wealth/override",
        headers=as_role("admin"),
        json={"tier": "private", "reason": "Family office onboarding", "expires_at": expires},
    )
    assert response.status_code == 200, response.text
    tier = await tier_of(client, as_role, "O1")
    assert tier["tier"] == "private" and tier["override"]["reason"] == "Family office onboarding"
    assert tier["override"]["actor"] == "test-admin" and tier["qualified_tier"] == "mass"
    await session.execute(text("UPDATE tier_assignment SET override_expires_at = now() - interval '1 minute'"))
    await session.commit()
    expired = await tier_of(client, as_role, "O1")
    assert expired["tier"] == "mass" and expired["override"] is None
    await client.post("/v1/customers/O1/tiers/evaluate", headers=as_role("integration"))
    reasons = [
        h["reason"]
        for h in (await client.get("/v1/customers/O1/tiers/history", headers=as_role("app"))).json()["items"]
    ]
    assert reasons == ["rules", "override", "override_expired"]


async def test_override_removed_restores_the_rule_tier(client, as_role, wealth):
    await make_customer(client, as_role, "O2", "60000.00")
    await client.put(
        "/v1/customers/O2/tiers/wealth/override",
        headers=as_role("admin"),
        json={"tier": "mass", "reason": "Collections case"},
    )
    assert (await tier_of(client, as_role, "O2"))["tier"] == "mass"
    removed = await client.delete("/v1/customers/O2/tiers/wealth/override", headers=as_role("admin"))
    assert removed.status_code == 200
    assert (await tier_of(client, as_role, "O2"))["tier"] == "gold"


async def test_feed_is_followed_with_a_cursor_without_missing_or_repeating(client, as_role, wealth):
    for i in range(5):
        await make_customer(client, as_role, f"F{i}", "60000.00")
    seen, cursor = [], None
    while True:
        page = await feed(client, as_role, cursor, limit=2)
        if not page["items"]:
            break
        seen += [(t["customer_id"], t["to_tier"]) for t in page["items"]]
        cursor = page["next_cursor"]
    # each customer: initial (mass, before the holdings arrived) then an upgrade to gold
    assert len(seen) == len(set(seen)) == 10
    assert (await feed(client, as_role, cursor))["next_cursor"] == cursor  # nothing new: same cursor back
    await set_balance(client, as_role, "F0", "900000.00")
    new = await feed(client, as_role, cursor)
    assert [(t["customer_id"], t["from_tier"], t["to_tier"]) for t in new["items"]] == [("F0", "gold", "wealth")]


async def test_batch_run_agrees_with_one_by_one_evaluation(client, as_role, wealth, session, sessionmaker):
    rng = random.Random(5)
    for i in range(40):
        balance = rng.choice(["100.00", "49999.99", "50000.00", "499999.99", "500000.00", "12000000.00"])
        onboarded = (datetime.now(UTC) - timedelta(days=rng.choice([30, 200, 400, 3000]))).isoformat()
        await make_customer(client, as_role, f"B{i:02d}", balance, onboarded_at=onboarded)
    one_by_one = dict(
        (
            await session.execute(
                text("SELECT c.external_id, a.tier_code FROM tier_assignment a JOIN customer c ON c.id = a.customer_id")
            )
        ).all()
    )
    assert set(one_by_one.values()) == {"mass", "gold", "wealth", "private"}
    await session.execute(text("DELETE FROM tier_assignment"))
    await session.commit()
    run = await client.post("/v1/tier-runs", json={"policy_key": "wealth"}, headers=as_role("admin"))
    assert run.status_code == 202, run.text
    status = (await client.get(f"/v1/tier-runs/{run.json()['id']}", headers=as_role("admin"))).json()
    assert status["status"] == "succeeded" and status["processed"] == status["total"] == 40
    in_batch = dict(
        (
            await session.execute(
                text("SELECT c.external_id, a.tier_code FROM tier_assignment a JOIN customer c ON c.id = a.customer_id")
            )
        ).all()
    )
    assert in_batch == one_by_one
    simulated = await client.post("/v1/tier-policies/wealth/versions/1/simulate", headers=as_role("admin"))
    distribution = {d["tier"]: d["customers"] for d in simulated.json()["distribution"] if d["customers"]}
    counted = {}
    for code in in_batch.values():
        counted[code] = counted.get(code, 0) + 1
    assert distribution == counted


async def test_run_killed_midway_leaves_customers_consistent_and_a_new_run_completes(
    client, as_role, wealth, session, sessionmaker, monkeypatch
):
    for i in range(12):
        await make_customer(client, as_role, f"K{i:02d}", "60000.00")
    await session.execute(text("DELETE FROM tier_assignment"))
    await session.commit()
    real_assign, calls = assign, []

    async def dies_on_second_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionResetError("the process was killed")
        return await real_assign(*args, **kwargs)

    monkeypatch.setattr(runs, "assign", dies_on_second_chunk)
    async with sessionmaker() as s:
        run = await runs.start_run(s, None, "cron")
        await s.commit()
    await runs.execute_run(sessionmaker, run.id, chunk_size=5)
    failed = (await client.get(f"/v1/tier-runs/{run.id}", headers=as_role("admin"))).json()
    assert failed["status"] == "failed" and "consistent" in failed["error"]
    assigned = await session.scalar(text("SELECT count(*) FROM tier_assignment"))
    first_chunk = await session.scalar(
        text(  # chunks are aligned to multiples of their size
            "SELECT count(*) FROM customer WHERE id <= (SELECT min(id) - min(id) % 5 + 4 FROM customer)"
        )
    )
    assert assigned == first_chunk > 0  # the first chunk, whole; nothing of the chunk that died
    monkeypatch.setattr(runs, "assign", real_assign)
    retry = await client.post("/v1/tier-runs", json={"all": True}, headers=as_role("admin"))
    assert retry.status_code == 202
    done = (await client.get(f"/v1/tier-runs/{retry.json()['id']}", headers=as_role("admin"))).json()
    assert done["status"] == "succeeded"
    assert await session.scalar(text("SELECT count(*) FROM tier_assignment WHERE tier_code = 'gold'")) == 12


async def test_a_run_in_id_ranges_counts_every_live_customer_once(client, as_role, wealth, session, sessionmaker):
    """Chunks are id ranges: erased customers inside a range are skipped and not counted, every other customer
    is evaluated in exactly one chunk."""
    for i in range(11):
        await make_customer(client, as_role, f"R{i:02d}", "60000.00")
    assert (await client.delete("/v1/customers/R04", headers=as_role("admin"))).status_code == 204
    await session.execute(text("DELETE FROM tier_assignment"))
    await session.commit()
    async with sessionmaker() as s:
        run = await runs.start_run(s, None, "cron")
        await s.commit()
    await runs.execute_run(sessionmaker, run.id, chunk_size=3)
    status = (await client.get(f"/v1/tier-runs/{run.id}", headers=as_role("admin"))).json()
    assert status["status"] == "succeeded" and status["processed"] == status["total"] == 10
    assert await session.scalar(text("SELECT count(*) FROM tier_assignment")) == 10
    assert await session.scalar(text("SELECT count(*) FROM tier_transition WHERE direction = 'initial'")) >= 10


async def test_customers_listed_by_tier(client, as_role, wealth):
    await make_customer(client, as_role, "T1", "60000.00")
    await make_customer(client, as_role, "T2", "100.00")
    gold = await client.get("/v1/customers", params={"policy_key": "wealth", "tier": "gold"}, headers=as_role("admin"))
    assert [c["customer_id"] for c in gold.json()["items"]] == ["T1"]
    missing_policy = await client.get("/v1/customers", params={"tier": "gold"}, headers=as_role("admin"))
    assert missing_policy.status_code == 422


async def test_care_calendar_lists_birthdays_and_anniversaries_of_a_tier(client, as_role, wealth):
    soon = day_in(3)
    await make_customer(client, as_role, "C1", "60000.00", birth_date=soon.replace(year=1980).isoformat())
    await make_customer(
        client,
        as_role,
        "C2",
        "60000.00",
        birth_date="1980-01-01" if soon.month != 1 else "1980-07-01",
        onboarded_at=datetime.combine(soon.replace(year=2015), datetime.min.time(), UTC).isoformat(),
    )
    await make_customer(client, as_role, "C3", "100.00", birth_date=soon.replace(year=1990).isoformat())
    response = await client.get(
        "/v1/care-calendar", params={"policy_key": "wealth", "tier": "gold", "days": 7}, headers=as_role("admin")
    )
    assert response.status_code == 200, response.text
    entries = {(e["customer_id"], e["occasion"], e["years"]) for e in response.json()["items"]}
    assert ("C1", "birthday", soon.year - 1980) in entries
    assert ("C2", "anniversary", soon.year - 2015) in entries
    assert not any(e[0] == "C3" for e in entries)


async def test_erasure_removes_the_assignment_facts(client, as_role, wealth, session):
    await make_customer(client, as_role, "E1", "60000.00")
    assert await session.scalar(text("SELECT count(*) FROM tier_assignment")) == 1
    assert (await client.delete("/v1/customers/E1", headers=as_role("admin"))).status_code == 204
    assert await session.scalar(text("SELECT count(*) FROM tier_assignment")) == 0


async def test_events_re_tier_customers_under_policies_reading_activity(client, as_role, wealth, sessionmaker):
    """Events are accepted without re-tiering in the request; the re-tiering worker's next batch moves the tier."""
    admin = as_role("admin")
    created = await client.post(
        "/v1/tier-policies",
        headers=admin,
        json={
            "policy_key": "activity",
            "name": "Activity",
            "downgrade_grace_days": 0,
            "tiers": [
                {
                    "code": "active",
                    "label": "Active",
                    "rank": 2,
                    "condition": {"attr": "txn_count_90d", "op": "gte", "value": 2},
                },
                {"code": "idle", "label": "Idle", "rank": 1, "condition": {"always": True}},
            ],
        },
    )
    assert created.status_code == 201
    assert (await client.post("/v1/tier-policies/activity/versions/1/activate", headers=admin)).status_code == 200
    await make_customer(client, as_role, "EV1", "60000.00")
    assert (await tier_of(client, as_role, "EV1", "activity"))["tier"] == "idle"
    now = datetime.now(UTC).isoformat()
    response = await client.post(
        "/v1/events",
        headers=as_role("integration"),
        json={
            "events": [
                {
                    "type": "transaction",
                    "event_id": f"ev-{i}",
                    "customer_id": "EV1",
                    "occurred_at": now,
                    "amount": "20.00",
                    "direction": "debit",
                    "channel": "card",
                }
                for i in range(2)
            ]
        },
    )
    assert response.status_code == 200, response.text
    assert (await tier_of(client, as_role, "EV1", "activity"))["tier"] == "idle"  # not in the request
    assert await retier.drain(sessionmaker, 100) == 1
    assert (await tier_of(client, as_role, "EV1", "activity"))["tier"] == "active"
    assert (await tier_of(client, as_role, "EV1"))["tier"] == "gold"
