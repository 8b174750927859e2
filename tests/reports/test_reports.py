"""Reports through HTTP on small known datasets: tier distribution and migrations, the recommendation funnel with
Wilson intervals and uplift, satisfaction by tier; and the interval functions against known values."""

from datetime import UTC, datetime, timedelta

import pytest

from app.reports.intervals import difference_interval, wilson_interval
from tests.feedback.helpers import event, make_customer, serve_items
from tests.feedback.test_complaints import complaint, move
from tests.feedback.test_surveys import survey
from tests.tiering.test_assignment import set_balance


def test_wilson_interval_known_values():
    assert wilson_interval(0, 0) is None
    low, high = wilson_interval(0, 10)
    assert low == 0 and high == pytest.approx(0.27753, abs=1e-5)
    assert wilson_interval(5, 10) == pytest.approx((0.23659, 0.76341), abs=1e-5)
    assert wilson_interval(81, 263) == pytest.approx((0.25529, 0.36621), abs=1e-5)
    assert wilson_interval(10, 10) == pytest.approx((0.72247, 1.0), abs=1e-5)
    with pytest.raises(ValueError):
        wilson_interval(11, 10)


def test_difference_interval_known_values():
    difference, low, high = difference_interval(30, 100, 20, 100)
    assert difference == pytest.approx(0.1)
    assert (low, high) == pytest.approx((-0.01922, 0.21922), abs=1e-5)  # 0.1 ± 1.96 * sqrt(.21/100 + .16/100)
    assert difference_interval(1, 0, 1, 5) is None


async def report(client, as_role, path: str, **params) -> dict:
    response = await client.get(f"/v1/reports/{path}", params=params, headers=as_role("admin"))
    assert response.status_code == 200, response.text
    return response.json()


async def test_tier_distribution_and_migrations(client, as_role, wealth):
    for external_id, balance in (("R1", "10000.00"), ("R2", "60000.00"), ("R3", "60000.00"), ("R4", "600000.00")):
        await make_customer(client, as_role, external_id, balance)
    await set_balance(client, as_role, "R1", "70000.00")  # mass -> gold
    distribution = await report(client, as_role, "tier-distribution", policy_key="wealth")
    assert distribution["customers"] == 4 and distribution["aum"] == "790000.00"
    assert [(t["tier"], t["label"], t["customers"], t["aum"]) for t in distribution["tiers"]] == [
        ("wealth", "Wealth", 1, "600000.00"),
        ("gold", "Gold", 3, "190000.00"),
    ]
    migrations = await report(client, as_role, "tier-migrations", policy_key="wealth")
    # each customer starts in mass (no holdings yet), then moves up when its holdings arrive
    assert {(m["from_tier"], m["to_tier"]): m["count"] for m in migrations["moves"]} == {
        (None, "mass"): 4,
        ("mass", "gold"): 3,
        ("mass", "wealth"): 1,
    }
    assert (migrations["initial"], migrations["upgrades"], migrations["downgrades"]) == (4, 4, 0)
    earlier = await report(
        client, as_role, "tier-migrations", policy_key="wealth", to=(datetime.now(UTC) - timedelta(days=1)).isoformat()
    )
    assert earlier["moves"] == []
    missing = await client.get("/v1/reports/tier-distribution", params={"policy_key": "nope"}, headers=as_role("admin"))
    assert missing.status_code == 404
    assert (await client.get("/v1/reports/tier-distribution", headers=as_role("app"))).status_code == 403


async def test_recommendation_funnel_with_intervals_and_uplift(client, as_role, session):
    from tests.factories import add_products

    await add_products(session)
    await session.commit()
    await make_customer(client, as_role, "P1")
    await make_customer(client, as_role, "P2")
    treated = await serve_items(session, "P1", ["balanced_fund"] * 4, strategy="personalised")
    held_out = await serve_items(session, "P2", ["equity_fund"] * 2, strategy="holdout_popularity")
    events = [event(f"i{n}", rid, "P1", "impression", 60) for n, rid in enumerate(treated)]
    events += [
        event("c0", treated[0], "P1", "click", 50),
        event("c1", treated[1], "P1", "click", 50),
        event("a0", treated[0], "P1", "accept", 40),
        event("v0", treated[0], "P1", "convert", 30),
        event("h0", held_out[0], "P2", "impression", 30),
        event("h1", held_out[1], "P2", "dismiss", 20),
    ]
    response = await client.post("/v1/feedback/events", json={"events": events}, headers=as_role("app"))
    assert response.json()["accepted"] == len(events)
    # from yesterday: the events are up to an hour old, which is yesterday just after midnight (UTC)
    since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    funnel = await report(client, as_role, "recommendation-funnel", **{"from": since})
    rows = {(r["product_code"], r["tier"]): r for r in funnel["rows"]}
    fund = rows[("balanced_fund", "gold")]
    assert (fund["impressions"], fund["clicks"], fund["accepts"], fund["conversions"]) == (4, 2, 1, 1)
    assert fund["click_rate"]["rate"] == 0.5
    low, high = wilson_interval(2, 4)
    assert fund["click_rate"]["interval"] == pytest.approx({"low": low, "high": high})
    assert fund["conversion_rate"]["interval"]["low"] == pytest.approx(wilson_interval(1, 4)[0])
    equity = rows[("equity_fund", "gold")]
    assert (equity["impressions"], equity["clicks"], equity["conversions"]) == (2, 0, 0)
    assert funnel["treatment"]["impressions"] == 4 and funnel["treatment"]["conversions"] == 1
    assert funnel["holdout"]["impressions"] == 2 and funnel["holdout"]["conversions"] == 0
    difference, low, high = difference_interval(1, 4, 0, 2)
    assert funnel["uplift"]["difference"] == pytest.approx(0.25)
    assert funnel["uplift"]["interval"] == pytest.approx({"low": low, "high": high})
    empty = await report(client, as_role, "recommendation-funnel", to="2020-01-01")
    assert empty["rows"] == [] and empty["uplift"] is None and empty["treatment"]["conversion_rate"]["rate"] is None


async def test_satisfaction_by_tier_and_complaints(client, as_role, wealth):
    for external_id, balance in (("Q1", "10000.00"), ("Q2", "60000.00"), ("Q3", "60000.00")):
        await make_customer(client, as_role, external_id, balance)
    answers = [
        survey("q1-a", "Q1", "nps", 10, days_ago=2),
        survey("q2-a", "Q2", "nps", 3, days_ago=9),
        survey("q2-b", "Q2", "nps", 9, days_ago=3),
        survey("q3-a", "Q3", "nps", 5, days_ago=2),
        survey("q3-old", "Q3", "nps", 10, days_ago=45),
        survey("q2-c", "Q2", "csat", 4),
        survey("q3-c", "Q3", "csat", 2),
    ]
    for body in answers:
        assert (await client.post("/v1/feedback/surveys", headers=as_role("app"), json=body)).status_code == 201
    opened = {}
    for event_id, customer, category, days_ago in (
        ("x1", "Q1", "fees", 4),
        ("x2", "Q2", "app", 2),
        ("x3", "Q3", "fees", 10),
        ("x4", "Q3", "service", 1),
    ):
        response = await client.post(
            "/v1/feedback/complaints",
            headers=as_role("app"),
            json=complaint(event_id, customer, category, days_ago=days_ago),
        )
        opened[event_id] = response.json()["id"]
    for event_id in ("x1", "x2", "x3"):
        assert (await move(client, as_role, opened[event_id], "resolved")).status_code == 200
    result = await report(client, as_role, "satisfaction", policy_key="wealth")
    tiers = {t["tier"]: t for t in result["tiers"]}
    assert (
        tiers["gold"]["nps_responses"],
        tiers["gold"]["promoters"],
        tiers["gold"]["detractors"],
        tiers["gold"]["nps"],
    ) == (2, 1, 1, 0.0)
    assert tiers["gold"]["csat_avg"] == 3.0 and tiers["gold"]["csat_responses"] == 2
    assert (tiers["mass"]["nps"], tiers["mass"]["csat_avg"]) == (100.0, None)
    assert (result["nps"], result["nps_responses"], result["csat_avg"]) == (33.3, 3, 3.0)
    assert result["complaints"] == 4
    assert result["complaints_by_status"] == [{"key": "open", "count": 1}, {"key": "resolved", "count": 3}]
    assert result["complaints_by_category"] == [
        {"key": "app", "count": 1},
        {"key": "fees", "count": 2},
        {"key": "service", "count": 1},
    ]
    assert result["median_days_to_resolve"] == 4.0


async def test_report_time_range_is_checked(client, as_role):
    for params in ({"from": "2026-11-10", "to": "2026-11-01"}, {"from": "2026-11-01T00:00:00"}, {"to": "yesterday"}):
        response = await client.get("/v1/reports/recommendation-funnel", params=params, headers=as_role("admin"))
        assert response.status_code == 422, params
        assert response.headers["content-type"] == "application/problem+json"
