"""The effective tier (an unexpired override wins over the tier the rules gave) has one definition, the SQL
functions of migrations/versions/2026-12-06_effective_tier.py, and every place that reads a customer's tier agrees
with it: the tiers read (hot and routed), lists by tier, the tier distribution and satisfaction reports, the care
calendar, the recommendations' tier and popularity statistics, and the feed when an override is removed."""

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text

from app.recommendations.ranking_stats import refresh_stats
from tests.feedback.test_surveys import survey
from tests.tiering.test_assignment import make_customer, tier_of

# customer: (the tier it has, the rank, whether its override applies); each has 1,000 in savings: rules say mass
EXPECTED = {"NONE": ("mass", 10, False), "HELD": ("private", 40, True), "LAPSED": ("mass", 10, False)}


async def _set_override(client, as_role, external_id: str, expires_at: datetime) -> None:
    response = await client.put(
        f"/v1/customers/{external_id}/tiers/wealth/override",
        headers=as_role("admin"),
        json={"tier": "private", "reason": "Retention", "expires_at": expires_at.isoformat()},
    )
    assert response.status_code == 200, response.text


async def test_override_absent_unexpired_and_expired_mean_the_same_tier_everywhere(
    client, routed, as_role, wealth, session
):
    birthday = date.today() + timedelta(days=2)
    born = birthday.replace(year=1980) if (birthday.month, birthday.day) != (2, 29) else date(1980, 3, 1)
    for external_id in EXPECTED:
        await make_customer(client, as_role, external_id, "1000.00", birth_date=born.isoformat())
    in_a_month = datetime.now(UTC) + timedelta(days=30)
    await _set_override(client, as_role, "HELD", in_a_month)
    await _set_override(client, as_role, "LAPSED", in_a_month)
    for external_id in EXPECTED:  # (a survey re-tiers its customer, which clears lapsed overrides: answer first)
        answered = await client.post(
            "/v1/feedback/surveys", headers=as_role("app"), json=survey(f"nps-{external_id}", external_id, "nps", 10)
        )
        assert answered.status_code == 201, answered.text
    # LAPSED's override expires, and stays on its row until the next evaluation clears it
    await session.execute(
        text(
            "UPDATE tier_assignment SET override_expires_at = now() - interval '1 minute' FROM customer c "
            "WHERE c.id = tier_assignment.customer_id AND c.external_id = 'LAPSED'"
        )
    )
    await session.commit()

    # the definition itself
    rows = await session.execute(
        text(
            "SELECT c.external_id, effective_tier(a), effective_rank(a), tier_override_applies(a), a.override_code "
            "FROM tier_assignment a JOIN customer c ON c.id = a.customer_id"
        )
    )
    by_customer = {row[0]: row[1:] for row in rows}
    assert {c: r[:3] for c, r in by_customer.items()} == EXPECTED
    assert by_customer["LAPSED"][3] == "private"  # still on the row, and not applied

    # the customer's tiers, on the hot path and the routed one
    for external_id, (tier, rank, applies) in EXPECTED.items():
        for reader in (client, routed):
            read = (await reader.get(f"/v1/customers/{external_id}/tiers", headers=as_role("app"))).json()
            assert (read["tiers"][0]["tier"], read["tiers"][0]["rank"]) == (tier, rank), external_id
            assert (read["tiers"][0]["override"] is not None) == applies, external_id

    # customers listed by tier
    listed = await client.get(
        "/v1/customers", params={"policy_key": "wealth", "tier": "private"}, headers=as_role("admin")
    )
    assert listed.status_code == 200, listed.text
    assert [c["customer_id"] for c in listed.json()["items"]] == ["HELD"]

    # the reports
    distribution = (
        await client.get("/v1/reports/tier-distribution", params={"policy_key": "wealth"}, headers=as_role("admin"))
    ).json()
    assert {t["tier"]: (t["customers"], t["rank"]) for t in distribution["tiers"]} == {
        "private": (1, 40),
        "mass": (2, 10),
    }
    satisfaction = (
        await client.get("/v1/reports/satisfaction", params={"policy_key": "wealth"}, headers=as_role("admin"))
    ).json()
    assert {t["tier"]: t["nps_responses"] for t in satisfaction["tiers"]} == {"private": 1, "mass": 2}

    # the care calendar
    for tier, expected in (("private", {"HELD"}), ("mass", {"NONE", "LAPSED"})):
        calendar = await client.get(
            "/v1/care-calendar", params={"policy_key": "wealth", "tier": tier, "days": 7}, headers=as_role("admin")
        )
        assert calendar.status_code == 200, calendar.text
        assert {e["customer_id"] for e in calendar.json()["items"] if e["occasion"] == "birthday"} == expected, tier

    # recommendations: the tier propensities are learned per, and the popularity statistics by tier
    for external_id, (tier, _, _) in EXPECTED.items():
        recommended = await client.get(f"/v1/customers/{external_id}/recommendations", headers=as_role("app"))
        assert recommended.status_code == 200 and recommended.json()["tier"] == tier, recommended.text
    await refresh_stats(session, "wealth")
    holders = dict(
        (
            await session.execute(
                text("SELECT tier_code, holders FROM product_holding_stat WHERE product_code = 'savings_account'")
            )
        ).all()
    )
    assert holders == {"private": 1, "mass": 2, "*": 3}

    # the feed: removing an override that applies moves the customer; removing a lapsed one does not
    for external_id in ("HELD", "LAPSED"):
        removed = await client.delete(f"/v1/customers/{external_id}/tiers/wealth/override", headers=as_role("admin"))
        assert removed.status_code == 200 and (await tier_of(client, as_role, external_id))["tier"] == "mass"
    moves = dict(
        (
            await session.execute(
                text(
                    "SELECT c.external_id, count(*) FROM tier_transition t JOIN customer c ON c.id = t.customer_id "
                    "WHERE t.reason = 'override_removed' GROUP BY 1"
                )
            )
        ).all()
    )
    assert moves == {"HELD": 1}
