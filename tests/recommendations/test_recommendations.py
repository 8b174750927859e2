"""Recommendations through HTTP: only suitable, eligible, unheld, consented, unfatigued products; ranked with
reasons; served lists stored; feedback moves the ranking; the holdout gets the baseline."""

import random
import uuid
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from app.main import create_app
from app.recommendations import ranking_stats
from app.recommendations.ranking import in_holdout
from tests.factories import WEALTH_TIERS, serve_list
from tests.recommendations.conftest import CATALOG


async def make_customer(
    client,
    as_role,
    external_id,
    *,
    risk=3,
    assessed_days_ago=10,
    consent=True,
    segment="retail",
    holdings=(("current_account", "1000.00"),),
):
    assessed = (datetime.now(UTC) - timedelta(days=assessed_days_ago)).isoformat() if risk else None
    body = {
        "segment": segment,
        "onboarded_at": "2018-01-01T00:00:00Z",
        "risk_level": risk,
        "risk_assessed_at": assessed,
        "marketing_consent": consent,
    }
    assert (
        await client.put(f"/v1/customers/{external_id}", json=body, headers=as_role("integration"))
    ).status_code in (200, 201)
    response = await client.put(
        f"/v1/customers/{external_id}/holdings",
        headers=as_role("integration"),
        json={
            "holdings": [
                {"product_code": code, "balance": balance, "as_of": date.today().isoformat()}
                for code, balance in holdings
            ]
        },
    )
    assert response.status_code == 200, response.text


async def recommend(client, as_role, external_id, **params):
    response = await client.get(
        f"/v1/customers/{external_id}/recommendations",
        params={"limit": 10, "explore": "false", **params},
        headers=as_role("app"),
    )
    assert response.status_code == 200, response.text
    return response.json()


RISK = {code: risk for code, _, risk, *_ in CATALOG}


async def test_unsuitable_unconsented_or_held_products_never_appear(client, as_role, bank):
    rng = random.Random(11)
    codes = [c for c, *_ in CATALOG if c != "maturity_notice"]
    for i in range(40):
        risk = rng.choice([None, 1, 2, 3, 4, 5])
        assessed = rng.choice([5, 200, 400, 800])  # > 365 days: the assessment has expired
        consent = rng.random() < 0.7
        held = rng.sample(codes, rng.randint(0, 4))
        await make_customer(
            client,
            as_role,
            f"P{i}",
            risk=risk,
            assessed_days_ago=assessed,
            consent=consent,
            segment=rng.choice(["retail", "small_business"]),
            holdings=[(code, f"{rng.randint(1, 300000)}.00") for code in held],
        )
        tolerance = risk if risk is not None and assessed < 365 else 1
        for _ in ("the customer's offer state computed", "the state read"):
            result = await recommend(client, as_role, f"P{i}", explain="true")
            for item in result["items"]:
                code = item["product"]["product_code"]
                assert RISK[code] <= tolerance, (i, code, tolerance)
                assert code not in held
                assert consent or code == "maturity_notice"  # service messages are exempt from consent
                assert item["score"] == pytest.approx(
                    item["score_parts"]["propensity"] * item["score_parts"]["value"] * item["score_parts"]["lever"],
                    rel=1e-4,
                )
            filtered = {f["product_code"]: f["filter"] for f in result["filtered_out"]}
            offered = {item["product"]["product_code"] for item in result["items"]}
            assert set(filtered) | offered == {c for c, *_ in CATALOG}
            assert all(filtered[code] == "already_held" for code in held)


async def test_items_carry_ids_reasons_and_the_served_list_is_stored(client, as_role, bank, session):
    await make_customer(client, as_role, "R1", risk=4, holdings=[("current_account", "150000.00")])
    result = await recommend(client, as_role, "R1", limit=3)
    assert result["strategy"] == "personalised" and len(result["items"]) == 3
    platinum = await recommend(client, as_role, "R1", exclude=["bond_fund"])
    card = next(item for item in platinum["items"] if item["product"]["product_code"] == "platinum_card")
    texts = [reason["text"] for reason in card["reasons"]]
    assert "aum_avg_3m 150,000 >= 100,000" in texts
    assert any(
        reason["code"] == "SUITABLE" and reason["text"] == "risk R1 <= tolerance 4" for reason in card["reasons"]
    )
    assert "bond_fund" not in [item["product"]["product_code"] for item in platinum["items"]]
    stored = await session.scalar(
        text(
            "SELECT sum(cardinality(l.product_codes)) FROM recommendation_list l JOIN customer c "
            "ON c.id = l.customer_id WHERE c.external_id = 'R1'"
        )
    )
    assert stored == 3 + len(platinum["items"])
    ids = {item["recommendation_id"] for item in result["items"]}
    assert len(ids) == 3


async def test_explain_names_the_filter_of_each_product(client, as_role, bank):
    await make_customer(client, as_role, "X1", risk=2, segment="retail", holdings=[("current_account", "10.00")])
    filtered = {
        f["product_code"]: f
        for f in (await recommend(client, as_role, "X1", explain="true", channel="web"))["filtered_out"]
    }
    assert filtered["current_account"]["filter"] == "already_held"
    assert filtered["equity_fund"]["filter"] == "not_suitable" and "R4 > 2" in filtered["equity_fund"]["detail"]
    assert filtered["platinum_card"]["filter"] in ("not_on_channel", "not_eligible")
    assert filtered["term_deposit"]["filter"] == "not_on_channel"
    mobile = {
        f["product_code"]: f["filter"] for f in (await recommend(client, as_role, "X1", explain="true"))["filtered_out"]
    }
    assert mobile["platinum_card"] == "not_eligible" and mobile["business_loan"] == "not_eligible"


async def add_feedback(session, external_id, product_code, kind, days_ago=1, channel="mobile"):
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = :e"), {"e": external_id})
    [rid] = await serve_list(session, customer_id, [product_code], channel=channel, score="0", propensity="0")
    await session.execute(
        text(
            "INSERT INTO feedback_event (customer_id, event_id, recommendation_id, product_code, channel, strategy, "
            "kind, occurred_at) VALUES (:c, :e, :r, :p, :ch, 'personalised', :k, now() - make_interval(days => :d))"
        ),
        {
            "c": customer_id,
            "e": str(uuid.uuid4()),
            "r": rid,
            "p": product_code,
            "ch": channel,
            "k": kind,
            "d": days_ago,
        },
    )
    await session.commit()


async def test_contact_policy_suppresses_after_dismissal_but_not_service_messages(client, as_role, bank, session):
    put = await client.put(
        "/v1/contact-policy",
        headers=as_role("admin"),
        json={
            "rules": [
                {
                    "name": "dismissed",
                    "outcome": "dismiss",
                    "threshold": 1,
                    "window_days": 30,
                    "scope": "product",
                    "suppress_days": 60,
                },
                {
                    "name": "ignored",
                    "outcome": "ignored_impression",
                    "threshold": 2,
                    "window_days": 30,
                    "scope": "category",
                    "suppress_days": 14,
                },
            ]
        },
    )
    assert put.status_code == 200, put.text
    assert (await client.put("/v1/contact-policy", headers=as_role("app"), json={"rules": []})).status_code == 403
    await make_customer(client, as_role, "CP1", risk=5)
    await add_feedback(session, "CP1", "bond_fund", "dismiss")
    await add_feedback(session, "CP1", "term_deposit", "impression")
    await add_feedback(session, "CP1", "maturity_notice", "impression")
    filtered = {f["product_code"]: f for f in (await recommend(client, as_role, "CP1", explain="true"))["filtered_out"]}
    assert filtered["bond_fund"]["filter"] == "contact_policy" and "dismissed" in filtered["bond_fund"]["detail"]
    # two ignored impressions in the deposit category: deposits are suppressed, the service message is not
    assert filtered["savings_account"]["filter"] == "contact_policy"
    assert "maturity_notice" not in filtered
    old = await recommend(client, as_role, "CP1")
    assert "balanced_fund" in [i["product"]["product_code"] for i in old["items"]]


async def test_feedback_moves_the_ranking(client, as_role, bank):
    """The learning loop through the API: customers are shown lists; they accept one product and dismiss another
    (reported at POST /v1/feedback/events); a new customer's ranking moves accordingly."""
    await make_customer(client, as_role, "L0", risk=5)
    before = [i["product"]["product_code"] for i in (await recommend(client, as_role, "L0"))["items"]]
    liked, disliked = before[-1], before[0]
    now = datetime.now(UTC).isoformat()
    for n in range(12):
        await make_customer(client, as_role, f"L{n + 1}", risk=5)
        shown = (await recommend(client, as_role, f"L{n + 1}"))["items"]
        events = []
        for item in shown:
            code, rid = item["product"]["product_code"], item["recommendation_id"]
            events.append(
                {
                    "event_id": f"{n}-{code}-seen",
                    "recommendation_id": rid,
                    "customer_id": f"L{n + 1}",
                    "type": "impression",
                    "occurred_at": now,
                }
            )
            if code in (liked, disliked):
                events.append(
                    {
                        "event_id": f"{n}-{code}-act",
                        "recommendation_id": rid,
                        "customer_id": f"L{n + 1}",
                        "type": "accept" if code == liked else "dismiss",
                        "occurred_at": now,
                    }
                )
        response = await client.post("/v1/feedback/events", json={"events": events}, headers=as_role("app"))
        assert response.status_code == 200, response.text
    after = [i["product"]["product_code"] for i in (await recommend(client, as_role, "L0"))["items"]]
    assert after[0] == liked and after.index(disliked) > before.index(disliked)


async def test_a_product_held_recently_is_won_back_with_its_reason(client, as_role, bank, test_settings):
    """A product the customer held within the win-back window (and no longer holds) has its propensity boosted,
    with the last day it was held as a reason; one held before the window has not."""
    today = date.today()
    await make_customer(client, as_role, "WB1", risk=5, holdings=())
    await make_customer(client, as_role, "WB2", risk=5, holdings=())
    for external_id, days_ago in (("WB1", 40), ("WB2", test_settings.winback_days + 30)):
        held = (today - timedelta(days=days_ago)).isoformat()
        for holdings in ([{"product_code": "bond_fund", "balance": "900.00", "as_of": held}], []):
            response = await client.put(
                f"/v1/customers/{external_id}/holdings", json={"holdings": holdings}, headers=as_role("integration")
            )
            assert response.status_code == 200, response.text
    won, plain = [
        {i["product"]["product_code"]: i for i in (await recommend(client, as_role, e))["items"]}
        for e in ("WB1", "WB2")
    ]
    assert {
        "code": "WIN_BACK",
        "text": f"held until {today - timedelta(days=40)}",
        "value": (today - timedelta(days=40)).isoformat(),
    } in won["bond_fund"]["reasons"]
    assert not any(r["code"] == "WIN_BACK" for item in plain.values() for r in item["reasons"])
    assert won["bond_fund"]["score_parts"]["propensity"] == pytest.approx(
        min(plain["bond_fund"]["score_parts"]["propensity"] * test_settings.winback_boost, 1.0), rel=1e-4
    )


async def test_a_product_for_some_tiers_is_offered_only_to_customers_in_one_of_them(client, as_role, bank, session):
    """Target tiers are read from every policy the customer is tiered by (an override counts); the response names
    the customer's tier in the primary policy."""
    admin = as_role("admin")
    created = await client.post(
        "/v1/tier-policies",
        headers=admin,
        json={"policy_key": "wealth", "name": "Wealth", "tiers": WEALTH_TIERS, "downgrade_grace_days": 30},
    )
    assert created.status_code == 201, created.text
    assert (await client.post("/v1/tier-policies/wealth/versions/1/activate", headers=admin)).status_code == 200
    await session.execute(text("UPDATE product SET target_tiers = '{private,wealth}' WHERE code = 'balanced_fund'"))
    await session.commit()
    await make_customer(client, as_role, "TT1", risk=5)
    before = await recommend(client, as_role, "TT1", explain="true")
    assert before["tier"] == "mass"
    assert {
        "product_code": "balanced_fund",
        "filter": "not_target_tier",
        "detail": "not offered to the customer's tiers",
    } in before["filtered_out"]
    override = await client.put(
        "/v1/customers/TT1/tiers/wealth/override", headers=admin, json={"tier": "private", "reason": "family office"}
    )
    assert override.status_code == 200, override.text
    after = await recommend(client, as_role, "TT1")
    assert after["tier"] == "private"
    balanced = next(i for i in after["items"] if i["product"]["product_code"] == "balanced_fund")
    assert {
        "code": "TIER_TARGET",
        "text": "offered to private, wealth customers",
        "value": ["private", "wealth"],
    } in balanced["reasons"]


async def test_exploration_is_repeatable_with_a_seed(client, as_role, bank):
    await make_customer(client, as_role, "S1", risk=5)
    a = await recommend(client, as_role, "S1", explore="true", seed=42)
    b = await recommend(client, as_role, "S1", explore="true", seed=42)
    assert [i["score"] for i in a["items"]] == [i["score"] for i in b["items"]]


async def test_holdout_is_a_stable_share_and_gets_the_popularity_baseline(
    client, as_role, bank, sessionmaker, test_settings
):
    ids = [f"H{i}" for i in range(2000)]
    share = sum(in_holdout(i, 0.05) for i in ids) / len(ids)
    assert 0.03 < share < 0.07 and [in_holdout(i, 0.05) for i in ids] == [in_holdout(i, 0.05) for i in ids]
    await make_customer(client, as_role, "H1", risk=5)
    app = create_app(test_settings.model_copy(update={"holdout_share": 0.5}), sessionmaker=sessionmaker)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as other:
        customer = next(i for i in ids if in_holdout(i, 0.5))
        await make_customer(other, as_role, customer, risk=5)
        result = (await other.get(f"/v1/customers/{customer}/recommendations", headers=as_role("app"))).json()
    assert result["strategy"] == "holdout_popularity"
    assert all(item["reasons"][0]["code"] == "POPULAR_IN_TIER" for item in result["items"])


async def test_refresh_stats_counts_holdings_and_co_holdings(client, as_role, bank, session):
    await make_customer(client, as_role, "Q1", holdings=[("current_account", "1.00"), ("bond_fund", "1.00")])
    await make_customer(client, as_role, "Q2", holdings=[("current_account", "1.00"), ("bond_fund", "1.00")])
    await make_customer(client, as_role, "Q3", holdings=[("current_account", "1.00")])
    await ranking_stats.refresh_stats(session, "wealth")
    both, held_total = (
        await session.execute(
            text(
                "SELECT holding_both, held_total FROM co_holding_stat WHERE held_code = 'current_account' "
                "AND product_code = 'bond_fund'"
            )
        )
    ).one()
    assert (both, held_total) == (2, 3)
    holders, customers = (
        await session.execute(
            text(
                "SELECT holders, customers FROM product_holding_stat WHERE product_code = 'current_account' "
                "AND tier_code = '*'"
            )
        )
    ).one()
    assert (holders, customers) == (3, 3)
    await session.commit()
    result = await recommend(client, as_role, "Q3")
    bond = next(item for item in result["items"] if item["product"]["product_code"] == "bond_fund")
    assert any(
        r["code"] == "CO_HOLDING" and r["text"] == "held by 67% of customers with your products"
        for r in bond["reasons"]
    )


async def test_contact_policy_changes_are_audited(client, as_role, bank):
    rules = {
        "rules": [
            {
                "name": "dismissed",
                "outcome": "dismiss",
                "threshold": 1,
                "window_days": 30,
                "scope": "product",
                "suppress_days": 60,
            }
        ]
    }
    assert (await client.put("/v1/contact-policy", headers=as_role("admin"), json=rules)).status_code == 200
    events = (
        await client.get("/v1/audit", params={"action": "contact_policy.update"}, headers=as_role("admin"))
    ).json()["items"]
    assert events[0]["actor"] == "test-admin" and events[0]["after"]["rules"][0]["name"] == "dismissed"
    assert events[0]["before"] == {"rules": []}
