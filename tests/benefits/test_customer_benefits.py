"""A customer's benefits through HTTP: in force with why and the uses left, conflicts resolved by the best value,
extra conditions by the one compiler, what a pending downgrade takes and what keeps the tier, the next tier's gap
equal to GET .../tiers' explanation, and texts in the customer's language."""

from datetime import date, timedelta

from tests.benefits.helpers import add_benefit, benefits_of, make_customer, set_balance, tiers_of
from tests.factories import WEALTH_GRACE_DAYS


def by_code(items: list[dict]) -> dict[str, dict]:
    return {item["code"]: item for item in items}


async def test_benefits_in_force_say_why_and_the_best_value_of_a_kind_wins(client, as_role, wealth):
    await add_benefit(
        client, as_role, "fee-50", "wealth", kind="fee_waiver", applies_to="fees", value="50", unit="percent"
    )
    await add_benefit(
        client, as_role, "fee-25", "gold", "wealth", kind="fee_waiver", applies_to="fees", value="25", unit="percent"
    )
    await add_benefit(client, as_role, "priority", "gold", "wealth", "private")
    await add_benefit(client, as_role, "adviser", "private")
    await make_customer(client, as_role, "BW1", "620000.00")

    view = await benefits_of(client, as_role, "BW1")
    assert view["language"] == "en" and "best value wins" in view["conflict_rule"]
    in_force = by_code(view["in_force"])
    assert set(in_force) == {"fee-50", "priority"}  # fee-25 lost to fee-50; adviser is private's
    assert in_force["fee-50"]["why"] == [{"policy_key": "wealth", "tier": "wealth", "condition": None}]
    assert in_force["fee-50"]["supersedes"] == [
        {"code": "fee-25", "value": "25.0000", "policy_key": "wealth", "tier": "wealth", "by": "fee-50"}
    ]
    assert in_force["priority"]["name"] == "priority (en)" and in_force["priority"]["usage"] is None

    await make_customer(client, as_role, "BG1", "60000.00")
    gold = by_code((await benefits_of(client, as_role, "BG1"))["in_force"])
    assert set(gold) == {"fee-25", "priority"} and gold["fee-25"]["supersedes"] == []


async def test_the_next_tier_gap_agrees_with_the_tier_explanation_to_the_cent(client, as_role, wealth):
    await add_benefit(client, as_role, "adviser", "private")
    await add_benefit(client, as_role, "lounge", "wealth", kind="service", value="4", unit="count")
    await make_customer(client, as_role, "NG1", "620000.37")
    view = await benefits_of(client, as_role, "NG1")
    [upward] = view["next_tiers"]
    assert (upward["policy_key"], upward["tier"], upward["rank"]) == ("wealth", "private", 40)
    assert [b["code"] for b in upward["benefits"]] == ["adviser"]
    [condition] = upward["gap"]["conditions"]
    explained = tiers_of(client, as_role, "NG1")
    private = (await explained)["wealth"]["explanation"][0]["conditions"][0]
    assert condition["pointer"] == private["pointer"] == "/tiers/0/condition"
    assert condition["value"] == private["value"] == "620000.37"
    assert condition["threshold"] == private["threshold"] == 10000000
    assert condition["distance"] == "9379999.63" and condition["closable"] == "by_customer"
    assert upward["gap"]["cheapest"] == ["/tiers/0/condition"] and upward["gap"]["met"] is False


async def test_a_condition_only_time_closes_is_said_so(client, as_role, wealth):
    recently = (date.today() - timedelta(days=100)).isoformat() + "T10:00:00Z"  # 3 months of tenure
    await make_customer(client, as_role, "NT1", "60000.00", onboarded_at=recently)
    [upward] = (await benefits_of(client, as_role, "NT1"))["next_tiers"]
    assert upward["tier"] == "wealth"
    conditions = {c["attribute"]: c for c in upward["gap"]["conditions"]}
    assert conditions["aum_avg_3m"]["distance"] == "440000.00" and conditions["aum_avg_3m"]["closable"] == "by_customer"
    tenure = conditions["tenure_months"]
    assert tenure["value"] == 3 and tenure["distance"] == 9 and tenure["closable"] == "with_time"
    assert upward["gap"]["closable"] == "with_time"
    assert upward["gap"]["cheapest"] == ["/tiers/1/condition/all/0", "/tiers/1/condition/all/1"]
    explanation = (await tiers_of(client, as_role, "NT1"))["wealth"]["explanation"]
    wealth_tier = next(t for t in explanation if t["tier"] == "wealth")
    assert [(c["value"], c["threshold"]) for c in wealth_tier["conditions"]] == [
        (c["value"], c["threshold"]) for c in upward["gap"]["conditions"]
    ]


async def test_a_pending_downgrade_shows_what_would_be_lost_by_when_and_what_keeps_it(client, as_role, wealth):
    await add_benefit(client, as_role, "lounge", "wealth", kind="service", value="4", unit="count")
    await add_benefit(client, as_role, "priority", "wealth", "mass")
    await make_customer(client, as_role, "AR1", "700000.00")
    await set_balance(client, as_role, "AR1", "100.00")
    view = await benefits_of(client, as_role, "AR1")
    assert set(by_code(view["in_force"])) == {"lounge", "priority"}  # the tier is kept through the grace
    [risk] = view["at_risk"]
    assert (risk["policy_key"], risk["tier"], risk["downgrade_to"]) == ("wealth", "wealth", "mass")
    assert risk["downgrade_on"] == (date.today() + timedelta(days=WEALTH_GRACE_DAYS)).isoformat()
    assert [b["code"] for b in risk["benefits"]] == ["lounge"]  # mass gives priority too: not lost
    keeps = {c["attribute"]: c for c in risk["keeps_it"]["conditions"]}
    assert keeps["aum_avg_3m"]["threshold"] == 500000 and keeps["aum_avg_3m"]["met"] is False
    tier = (await tiers_of(client, as_role, "AR1"))["wealth"]
    assert tier["downgrade_on"] == risk["downgrade_on"]
    explained = next(t for t in tier["explanation"] if t["tier"] == "wealth")["conditions"][0]
    assert keeps["aum_avg_3m"]["value"] == explained["value"]
    assert keeps["aum_avg_3m"]["value"] == "100.00" and keeps["aum_avg_3m"]["distance"] == "499900.00"


async def test_an_extra_condition_is_evaluated_by_the_compiler(client, as_role, wealth):
    this_month = date.today().replace(year=1980, day=1).isoformat()
    other_month = date.today().replace(year=1980, day=1, month=date.today().month % 12 + 1).isoformat()
    birthday = {
        "policy_key": "wealth",
        "tier": "gold",
        "condition": {"attr": "birthday_month", "op": "eq", "value": True},
    }
    await add_benefit(client, as_role, "birthday-gift", birthday, kind="gift", value="188", unit="currency")
    await make_customer(client, as_role, "BD1", "60000.00", birth_date=this_month)
    await make_customer(client, as_role, "BD2", "60000.00", birth_date=other_month)
    first = by_code((await benefits_of(client, as_role, "BD1"))["in_force"])
    assert first["birthday-gift"]["why"] == [
        {"policy_key": "wealth", "tier": "gold", "condition": {"attr": "birthday_month", "op": "eq", "value": True}}
    ]
    assert "birthday-gift" not in by_code((await benefits_of(client, as_role, "BD2"))["in_force"])


async def test_texts_follow_accept_language(client, as_role, wealth):
    await add_benefit(client, as_role, "priority", "gold", "mass")
    await make_customer(client, as_role, "L1", "100.00")
    chinese = await benefits_of(client, as_role, "L1", **{"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert chinese["language"] == "zh-CN" and chinese["in_force"][0]["name"] == "priority（中文）"
    assert (await benefits_of(client, as_role, "L1", **{"Accept-Language": "zh"}))["language"] == "zh-CN"
    assert (await benefits_of(client, as_role, "L1", **{"Accept-Language": "fr, en;q=0.5"}))["language"] == "en"
    assert (await benefits_of(client, as_role, "L1", **{"Accept-Language": "de"}))["in_force"][0]["name"] == (
        "priority (en)"
    )


async def test_an_unknown_customer_is_a_404(client, as_role, wealth):
    response = await client.get("/v1/customers/NOBODY/benefits", headers=as_role("app"))
    assert response.status_code == 404 and response.headers["content-type"] == "application/problem+json"


async def test_a_customer_of_the_default_programmes_sees_them_in_chinese(client, as_role, session):
    from app.benefits.service import load_default_benefits
    from app.tiering.policies import load_default_policies
    from tests.factories import add_products

    await add_products(session)
    await load_default_policies(session)
    await load_default_benefits(session)
    await session.commit()
    await make_customer(client, as_role, "DF1", "620000.00")
    view = await benefits_of(client, as_role, "DF1", **{"Accept-Language": "zh-CN"})
    in_force = by_code(view["in_force"])
    assert {"wealth-fee-waiver", "loan-rate-discount", "airport-lounge", "priority-line"} <= set(in_force)
    assert in_force["airport-lounge"]["name"] == "机场贵宾厅（每年 4 次）"
    assert in_force["airport-lounge"]["usage"]["left"] == 4
    upward = {n["policy_key"]: n for n in view["next_tiers"]}
    assert [b["code"] for b in upward["wealth"]["benefits"]] == [
        "airport-lounge-unlimited",
        "dedicated-adviser",
        "private-fee-waiver",
    ]
    assert upward["wealth"]["gap"]["conditions"][0]["distance"] == "9380000.00"


async def test_the_hot_read_and_the_router_give_the_same_document_and_see_catalogue_changes_at_once(
    client, routed, as_role, wealth
):
    await add_benefit(client, as_role, "priority", "gold", "wealth")
    await make_customer(client, as_role, "HR1", "60000.00")
    headers = {**as_role("app"), "Accept-Language": "zh-CN"}
    hot = await client.get("/v1/customers/HR1/benefits", headers=headers)
    slow = await routed.get("/v1/customers/HR1/benefits", headers=headers)
    assert hot.status_code == slow.status_code == 200
    assert hot.json() == slow.json() and hot.json()["language"] == "zh-CN"
    changed = await client.patch("/v1/benefits/priority", headers=as_role("admin"), json={"attachments": []})
    assert changed.status_code == 200
    assert (await benefits_of(client, as_role, "HR1"))["in_force"] == []
    missing = await client.get("/v1/customers/NOPE/benefits", headers=as_role("app"))
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert (await client.get("/v1/customers/HR1/benefits", headers=as_role("integration"))).status_code == 403
