"""Surveys through HTTP: stored once, comments returned and never logged, the latest NPS and the average CSAT as
customer attributes, and a survey that changes the customer's loyalty tier."""

import logging
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import text

from app.customers import retier
from app.tiering.policies import load_default_policies
from tests.factories import add_products
from tests.feedback.helpers import make_customer


def survey(event_id: str, customer: str, kind: str, score: int, days_ago: float = 1, **extra) -> dict:
    return {
        "event_id": event_id,
        "customer_id": customer,
        "kind": kind,
        "score": score,
        "channel": "mobile",
        "touchpoint": "app_rating_prompt",
        "occurred_at": (datetime.now(UTC) - timedelta(days=days_ago)).isoformat(),
        **extra,
    }


async def features(session, external_id: str) -> dict:
    row = (
        await session.execute(
            text(
                "SELECT f.nps_latest, f.is_promoter, f.is_detractor, f.csat_avg, f.open_complaints, "
                "f.days_to_resolve_avg "
                "FROM customer c, customer_features_for(ARRAY[c.id]) f WHERE c.external_id = :e"
            ),
            {"e": external_id},
        )
    ).one()
    view = (
        await session.execute(
            text(
                "SELECT nps_latest, is_promoter, is_detractor, csat_avg, open_complaints, days_to_resolve_avg "
                "FROM customer_features WHERE external_id = :e"
            ),
            {"e": external_id},
        )
    ).one()
    assert tuple(row) == tuple(view)  # one SELECT, two uses: the view and the function agree
    return dict(row._mapping)


async def test_survey_is_stored_once_and_its_comment_returned_but_never_logged(client, as_role, session, caplog):
    await make_customer(client, as_role, "S1")
    secret = "My adviser was rude, account 123-456"
    with caplog.at_level(logging.DEBUG):
        created = await client.post(
            "/v1/feedback/surveys", headers=as_role("app"), json=survey("s-1", "S1", "nps", 4, comment=secret)
        )
        assert created.status_code == 201, created.text
        retried = await client.post(
            "/v1/feedback/surveys", headers=as_role("app"), json=survey("s-1", "S1", "nps", 4, comment=secret)
        )
    assert retried.status_code == 200 and retried.json()["id"] == created.json()["id"]
    assert created.json()["comment"] == secret and created.json()["customer_id"] == "S1"
    assert secret not in caplog.text
    listed = await client.get("/v1/feedback/surveys", params={"customer_id": "S1"}, headers=as_role("admin"))
    assert listed.status_code == 200 and [s["comment"] for s in listed.json()["items"]] == [secret]
    assert (await features(session, "S1"))["nps_latest"] == 4


async def test_survey_validation(client, as_role):
    await make_customer(client, as_role, "S2")
    bad = [
        survey("b1", "S2", "csat", 7),
        survey("b2", "S2", "nps", 11),
        survey("b3", "S2", "nps", -1),
        survey("b4", "S2", "nps", 5, comment="x" * 2001),
        survey("b5", "S2", "nps", 5, days_ago=-1),
    ]
    for body in bad:
        response = await client.post("/v1/feedback/surveys", headers=as_role("app"), json=body)
        assert response.status_code == 422, body
    unknown = await client.post("/v1/feedback/surveys", headers=as_role("app"), json=survey("u", "NOPE", "nps", 5))
    assert unknown.status_code == 422 and unknown.json()["errors"][0]["pointer"] == "/customer_id"


async def test_latest_nps_by_time_and_average_csat_become_attributes(client, as_role, session):
    await make_customer(client, as_role, "S3")
    assert await features(session, "S3") == {
        "nps_latest": None,
        "is_promoter": False,
        "is_detractor": False,
        "csat_avg": None,
        "open_complaints": 0,
        "days_to_resolve_avg": None,
    }
    for body in (
        survey("n-new", "S3", "nps", 10, days_ago=1),
        survey("n-old", "S3", "nps", 2, days_ago=5),
        survey("c1", "S3", "csat", 4),
        survey("c2", "S3", "csat", 5),
        survey("c3", "S3", "csat", 5),
    ):
        response = await client.post("/v1/feedback/surveys", headers=as_role("app"), json=body)
        assert response.status_code == 201, response.text
    got = await features(session, "S3")
    assert got["nps_latest"] == 10 and got["is_promoter"] is True and got["is_detractor"] is False  # late 2 ignored
    assert str(got["csat_avg"]) == "4.67"
    attributes = (await client.get("/v1/attributes", params={"limit": 500}, headers=as_role("app"))).json()["items"]
    types = {a["name"]: a["type"] for a in attributes}
    assert types["nps_latest"] == "integer" and types["is_promoter"] == "boolean" and types["csat_avg"] == "number"
    assert types["open_complaints"] == "integer" and types["days_to_resolve_avg"] == "number"


@pytest.fixture
async def loyalty(client, as_role, session):
    await add_products(session)
    await load_default_policies(session)
    await session.commit()


async def make_loyal_customer(client, as_role, external_id: str, referrals: int, sessionmaker) -> None:
    """A loyal customer, its events re-tiered (the worker's batch, run here: app/customers/retier.py)."""
    await make_customer(client, as_role, external_id, onboarded_at="2015-03-01T10:00:00Z")
    today = date.today().isoformat()
    response = await client.put(
        f"/v1/customers/{external_id}/holdings",
        headers=as_role("integration"),
        json={
            "holdings": [
                {"product_code": code, "balance": "10000.00", "as_of": today}  # core: AUM 25,000 or more
                for code in ("current_account", "savings_account", "balanced_fund", "life_insurance")
            ]
        },
    )
    assert response.status_code == 200, response.text
    now = datetime.now(UTC)
    events = [
        {
            "type": "transaction",
            "event_id": f"{external_id}-t{i}",
            "customer_id": external_id,
            "occurred_at": (now - timedelta(days=i + 1)).isoformat(),
            "amount": "25.00",
            "direction": "debit",
            "channel": "card",
        }
        for i in range(12)
    ]
    events += [
        {
            "type": "referral",
            "event_id": f"{external_id}-r{i}",
            "customer_id": external_id,
            "occurred_at": (now - timedelta(days=3)).isoformat(),
        }
        for i in range(referrals)
    ]
    response = await client.post("/v1/events", json={"events": events}, headers=as_role("integration"))
    assert response.status_code == 200, response.text
    await retier.drain(sessionmaker, 100)


async def loyalty_tier(client, as_role, external_id: str) -> dict:
    response = await client.get(f"/v1/customers/{external_id}/tiers", headers=as_role("app"))
    assert response.status_code == 200, response.text
    return next(t for t in response.json()["tiers"] if t["policy_key"] == "loyalty")


async def converted_referral(client, as_role, referrer: str) -> None:
    """A referral of `referrer` that converted: a friend named by a code, onboarded, active."""
    await make_customer(client, as_role, f"{referrer}-FRIEND")
    made = await client.post(
        "/v1/referrals",
        headers=as_role("app"),
        json={
            "event_id": f"{referrer}-ref",
            "referrer_customer_id": referrer,
            "referral_code": f"CODE-{referrer}",
            "referred_at": (datetime.now(UTC) - timedelta(days=20)).isoformat(),
        },
    )
    assert made.status_code == 201, made.text
    moves = [{"to_status": "onboarded", "referee_customer_id": f"{referrer}-FRIEND"}, {"to_status": "active"}]
    for move in moves:
        moved = await client.post(f"/v1/referrals/{made.json()['id']}/transitions", headers=as_role("app"), json=move)
        assert moved.status_code == 200, moved.text


async def test_a_survey_changes_the_loyalty_tier(client, as_role, loyalty, sessionmaker):
    # never surveyed: a converted referral stands in for advocacy (a referral counter alone does not)
    await make_loyal_customer(client, as_role, "L1", referrals=1, sessionmaker=sessionmaker)
    assert (await loyalty_tier(client, as_role, "L1"))["tier"] == "core"
    await converted_referral(client, as_role, "L1")
    assert (await loyalty_tier(client, as_role, "L1"))["tier"] == "iron_fan"
    detractor = await client.post("/v1/feedback/surveys", headers=as_role("app"), json=survey("l1-a", "L1", "nps", 3))
    assert detractor.status_code == 201
    tier = await loyalty_tier(client, as_role, "L1")
    assert tier["qualified_tier"] == "core" and tier["at_risk"] is True  # a downgrade waits out its grace
    promoter = await client.post(
        "/v1/feedback/surveys", headers=as_role("app"), json=survey("l1-b", "L1", "nps", 9, days_ago=0.5)
    )
    assert promoter.status_code == 201
    tier = await loyalty_tier(client, as_role, "L1")
    assert (tier["tier"], tier["qualified_tier"], tier["at_risk"]) == ("iron_fan", "iron_fan", False)


async def test_a_promoter_answer_upgrades_at_once_and_an_open_complaint_holds_it_back(
    client, as_role, loyalty, sessionmaker
):
    await make_loyal_customer(client, as_role, "L2", referrals=0, sessionmaker=sessionmaker)
    assert (await loyalty_tier(client, as_role, "L2"))["tier"] == "core"
    response = await client.post("/v1/feedback/surveys", headers=as_role("app"), json=survey("l2-a", "L2", "nps", 10))
    assert response.status_code == 201
    assert (await loyalty_tier(client, as_role, "L2"))["tier"] == "iron_fan"
    complaint = await client.post(
        "/v1/feedback/complaints",
        headers=as_role("app"),
        json={"event_id": "l2-c", "customer_id": "L2", "category": "fees", "channel": "phone", "description": "Fee"},
    )
    assert complaint.status_code == 201
    assert (await loyalty_tier(client, as_role, "L2"))["qualified_tier"] == "core"
    resolved = await client.post(
        f"/v1/feedback/complaints/{complaint.json()['id']}/transitions",
        headers=as_role("admin"),
        json={"to_status": "resolved", "note": "refunded"},
    )
    assert resolved.status_code == 200
    tier = await loyalty_tier(client, as_role, "L2")
    assert (tier["tier"], tier["qualified_tier"]) == ("iron_fan", "iron_fan")
