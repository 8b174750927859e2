"""The demo bank populates communities, activities and referrals, so /docs has data to try; the reports answer on
it, and a second load adds no programme twice."""

from sqlalchemy import text

from app.demo import generate_demo_bank
from app.engagement.demo import load_demo_engagement
from app.tiering.policies import load_default_policies
from tests.engagement.helpers import ago, open_community
from tests.feedback.test_surveys import loyalty_tier


async def test_demo_bank_has_communities_activities_and_referrals(client, as_role, session):
    counts = await generate_demo_bank(session, 600, seed=3)
    await session.commit()
    assert counts["community_memberships"] > 0 and counts["activity_participations"] > 0 and counts["referrals"] > 0
    states = dict((await session.execute(text("SELECT state, count(*) FROM community_membership GROUP BY 1"))).all())
    assert {"joined", "declined", "invited"} <= states.keys()
    attended = await session.scalar(text("SELECT count(*) FROM activity_participation WHERE state = 'attended'"))
    converted = await session.scalar(text("SELECT count(*) FROM referral WHERE status = 'active'"))
    assert attended > 0 and converted > 0
    # every invited demo customer is one the audience admits and who consents
    outside = await session.scalar(
        text(
            "SELECT count(*) FROM community_membership m JOIN community c ON c.id = m.community_id "
            "JOIN customer_features f ON f.customer_id = m.customer_id "
            "WHERE c.key = 'young-families' AND (f.age >= 35 OR NOT f.marketing_consent)"
        )
    )
    assert outside == 0
    again = await load_demo_engagement(session, seed=3)
    assert again["community_membership"] == counts["community_memberships"]
    assert again["referral"] == counts["referrals"]

    metrics = await client.get("/v1/communities/young-families/metrics", headers=as_role("admin"))
    assert metrics.status_code == 200 and metrics.json()["members"] > 0, metrics.text
    results = await client.get("/v1/activities/salon_year_end/results", headers=as_role("admin"))
    assert results.status_code == 200 and results.json()["attended"] > 0, results.text


async def test_taking_part_moves_a_demo_customer_into_iron_fan_and_the_change_feed_shows_it(client, as_role, session):
    await generate_demo_bank(session, 2000, seed=7)
    await load_default_policies(session)
    await session.commit()
    # a loyal demo customer (core, long tenure, broad and active, no open complaint, not a detractor) whose advocacy
    # falls short of the iron-fan rule
    external_id = await session.scalar(
        text(
            "SELECT external_id FROM customer_features WHERE tenure_months >= 36 AND products_held_count >= 4 "
            "AND txn_count_90d >= 10 AND open_complaints = 0 AND NOT is_promoter AND NOT is_detractor "
            "AND advocacy_score = 0 AND marketing_consent AND aum_avg_3m >= 25000 AND days_since_last_txn <= 60 "
            "ORDER BY external_id LIMIT 1"
        )
    )
    assert external_id is not None
    evaluated = await client.post(f"/v1/customers/{external_id}/tiers/evaluate", headers=as_role("admin"))
    assert evaluated.status_code == 200, evaluated.text
    assert (await loyalty_tier(client, as_role, external_id))["tier"] == "core"
    await open_community(client, as_role, key="demo-club", audience={"always": True})
    invited = await client.post(
        "/v1/communities/demo-club/invitations",
        json={"customer_ids": [external_id], "channel": "mobile"},
        headers=as_role("admin"),
    )
    assert invited.json()["invited"] == 1, invited.text
    joined = await client.post(
        f"/v1/communities/demo-club/members/{external_id}/transitions",
        json={"to_state": "joined", "channel": "mobile", "at": ago(days=3)},
        headers=as_role("app"),
    )
    assert joined.status_code == 200
    posted = await client.post(
        "/v1/communities/demo-club/activity-events",
        json={"events": [{"event_id": "demo-post", "customer_id": external_id, "kind": "post", "occurred_at": ago(1)}]},
        headers=as_role("app"),
    )
    assert posted.json()["accepted"] == 1
    assert (await loyalty_tier(client, as_role, external_id))["tier"] == "iron_fan"
    cursor, moves = None, []
    while True:
        feed = await client.get(
            "/v1/tier-transitions",
            params={"limit": 500, **({"cursor": cursor} if cursor else {})},
            headers=as_role("integration"),
        )
        assert feed.status_code == 200, feed.text
        items = feed.json()["items"]
        moves += [(t["policy_key"], t["from_tier"], t["to_tier"]) for t in items if t["customer_id"] == external_id]
        cursor = feed.json()["next_cursor"]
        if not items or cursor is None:  # the feed's end (a follower keeps its cursor for later)
            break
    assert ("loyalty", "core", "iron_fan") in moves, moves
