"""The demo bank populates communities, activities and referrals, so /docs has data to try; the reports answer on
it, and a second load adds no programme twice."""

from sqlalchemy import text

from app.demo import generate_demo_bank
from app.engagement.demo import load_demo_engagement


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
