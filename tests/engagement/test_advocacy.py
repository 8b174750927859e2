"""Advocacy: referrals with a referee (a customer or a pending code) moving referred -> onboarded -> active, only
converted ones counting; the participation attributes in every rule; the shipped loyalty policy's iron-fan rule
reading them, so that taking part moves a loyal customer into iron_fan, as the change feed shows."""

from sqlalchemy import text

from tests.engagement.helpers import ago, default_policies, make_customer, open_community
from tests.feedback.test_surveys import loyalty_tier, make_loyal_customer, survey


async def features(session, external_id: str) -> dict:
    row = (
        await session.execute(
            text(
                "SELECT f.communities_joined, f.community_active_30d, f.activities_attended_12m, "
                "f.referrals_converted_12m, f.advocacy_score "
                "FROM customer c, customer_features_for(ARRAY[c.id]) f WHERE c.external_id = :e"
            ),
            {"e": external_id},
        )
    ).one()
    return dict(row._mapping)


async def refer(client, as_role, referrer: str, event_id: str, **referee) -> dict:
    body = {"event_id": event_id, "referrer_customer_id": referrer, "referred_at": ago(days=10), **referee}
    response = await client.post("/v1/referrals", json=body, headers=as_role("app"))
    assert response.status_code in (200, 201), response.text
    return response.json()


async def move(client, as_role, referral_id: int, **body):
    return await client.post(f"/v1/referrals/{referral_id}/transitions", json=body, headers=as_role("app"))


async def test_only_converted_referrals_count(client, as_role, session):
    for name in ("R", "F1", "F2"):
        await make_customer(client, as_role, name)
    by_code = await refer(client, as_role, "R", "r-1", referral_code="FRIEND-0001")
    assert (await refer(client, as_role, "R", "r-1", referral_code="FRIEND-0001"))["id"] == by_code["id"]  # retry
    by_customer = await refer(client, as_role, "R", "r-2", referee_customer_id="F2")
    assert (by_code["status"], by_code["referee_customer_id"]) == ("referred", None)
    self_referral = await client.post(
        "/v1/referrals",
        json={"event_id": "r-3", "referrer_customer_id": "R", "referee_customer_id": "R", "referred_at": ago(1)},
        headers=as_role("app"),
    )
    assert self_referral.status_code == 422
    both = await client.post(
        "/v1/referrals",
        json={
            "event_id": "r-4",
            "referrer_customer_id": "R",
            "referee_customer_id": "F1",
            "referral_code": "FRIEND-0002",
            "referred_at": ago(1),
        },
        headers=as_role("app"),
    )
    assert both.status_code == 422

    # a code must be resolved to the customer it brought in before it counts as onboarded
    assert (await move(client, as_role, by_code["id"], to_status="onboarded")).status_code == 422
    assert (await move(client, as_role, by_code["id"], to_status="active")).status_code == 409
    onboarded = await move(client, as_role, by_code["id"], to_status="onboarded", referee_customer_id="F1")
    assert onboarded.status_code == 200 and onboarded.json()["referee_customer_id"] == "F1"
    assert (await features(session, "R"))["referrals_converted_12m"] == 0  # onboarded is not converted yet
    assert (await move(client, as_role, by_code["id"], to_status="active")).status_code == 200
    assert (await move(client, as_role, by_customer["id"], to_status="onboarded")).status_code == 200
    assert (await features(session, "R"))["referrals_converted_12m"] == 1
    assert (await features(session, "R"))["advocacy_score"] == 3
    events = await session.execute(
        text(
            "SELECT payload->>'from_status', payload->>'to_status' FROM webhook_event "
            "WHERE event_type = 'referral.status_changed' AND (payload->>'referral_id')::int = :id ORDER BY id"
        ),
        {"id": by_code["id"]},
    )
    assert [tuple(r) for r in events] == [(None, "referred"), ("referred", "onboarded"), ("onboarded", "active")]
    listed = await client.get("/v1/referrals", params={"referrer": "R"}, headers=as_role("admin"))
    assert [r["id"] for r in listed.json()["items"]] == [by_code["id"], by_customer["id"]]

    # erasure: the referee is cleared from the referral, the referrer's referrals go
    assert (await client.delete("/v1/customers/F1", headers=as_role("admin"))).status_code == 204
    cleared = (await client.get(f"/v1/referrals/{by_code['id']}", headers=as_role("admin"))).json()
    assert (cleared["referee_customer_id"], cleared["referral_code"], cleared["status"]) == (None, None, "active")
    referrer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'R'"))
    assert (await client.delete("/v1/customers/R", headers=as_role("admin"))).status_code == 204
    left = await session.scalar(text("SELECT count(*) FROM referral WHERE referrer_id = :r"), {"r": referrer_id})
    assert left == 0


async def test_a_passive_with_a_converted_referral_is_an_iron_fan(client, as_role, session, sessionmaker):
    await default_policies(session)
    await make_loyal_customer(client, as_role, "P", referrals=0, sessionmaker=sessionmaker)
    passive = await client.post("/v1/feedback/surveys", headers=as_role("app"), json=survey("p-1", "P", "nps", 8))
    assert passive.status_code == 201
    assert (await loyalty_tier(client, as_role, "P"))["tier"] == "core"
    await make_customer(client, as_role, "P-FRIEND")
    made = await refer(client, as_role, "P", "p-ref", referee_customer_id="P-FRIEND")
    assert (await move(client, as_role, made["id"], to_status="onboarded")).status_code == 200
    assert (await loyalty_tier(client, as_role, "P"))["tier"] == "core"
    assert (await move(client, as_role, made["id"], to_status="active")).status_code == 200
    assert (await loyalty_tier(client, as_role, "P"))["tier"] == "iron_fan"


async def test_taking_part_moves_a_loyal_customer_into_iron_fan_and_the_change_feed_shows_it(
    client, as_role, session, sessionmaker
):
    await default_policies(session)
    await make_loyal_customer(client, as_role, "T", referrals=0, sessionmaker=sessionmaker)
    assert (await loyalty_tier(client, as_role, "T"))["tier"] == "core"
    await open_community(client, as_role, audience={"always": True})
    invited = await client.post(
        "/v1/communities/young-families/invitations",
        json={"customer_ids": ["T"], "channel": "mobile"},
        headers=as_role("admin"),
    )
    assert invited.json()["invited"] == 1
    joined = await client.post(
        "/v1/communities/young-families/members/T/transitions",
        json={"to_state": "joined", "channel": "mobile", "at": ago(days=5)},
        headers=as_role("app"),
    )
    assert joined.status_code == 200
    assert (await features(session, "T"))["advocacy_score"] == 1
    assert (await loyalty_tier(client, as_role, "T"))["tier"] == "core"
    posted = await client.post(
        "/v1/communities/young-families/activity-events",
        json={"events": [{"event_id": "t-post", "customer_id": "T", "kind": "post", "occurred_at": ago(days=1)}]},
        headers=as_role("app"),
    )
    assert posted.json()["accepted"] == 1
    assert await features(session, "T") == {
        "communities_joined": 1,
        "community_active_30d": True,
        "activities_attended_12m": 0,
        "referrals_converted_12m": 0,
        "advocacy_score": 3,
    }
    tier = await loyalty_tier(client, as_role, "T")
    assert tier["tier"] == "iron_fan", tier
    feed = await client.get("/v1/tier-transitions", params={"limit": 500}, headers=as_role("integration"))
    moves = [(t["from_tier"], t["to_tier"]) for t in feed.json()["items"] if t["customer_id"] == "T"]
    assert ("core", "iron_fan") in moves, moves
    # the attribute is usable in every rule: an audience reading it
    club = await client.post(
        "/v1/communities",
        json={
            "key": "advocates",
            "name": "Advocates",
            "owner_team": "t",
            "audience": {"attr": "advocacy_score", "op": "gte", "value": 3},
            "state": "open",
        },
        headers=as_role("admin"),
    )
    assert club.status_code == 201, club.text
    await make_customer(client, as_role, "Q")
    result = await client.post(
        "/v1/communities/advocates/invitations",
        json={"customer_ids": ["T", "Q"], "channel": "mobile"},
        headers=as_role("admin"),
    )
    assert {r["customer_id"]: r["outcome"] for r in result.json()["results"]} == {
        "T": "invited",
        "Q": "not_in_audience",
    }
