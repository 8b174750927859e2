"""The worklist rules and the care holiday calendar through HTTP: one rules document read with an ETag and
replaced with If-Match, validated with a pointer to the bad field (policies and tiers that exist), audited; holidays
created once (Idempotency-Key, Location), listed in pages by year, changed with If-Match, removed, audited."""

from sqlalchemy import text

from tests.managers.test_worklist_kinds import RULES, lifecycle


async def test_the_rules_are_read_replaced_with_if_match_validated_and_audited(client, as_role, wealth, session):
    admin = as_role("admin")
    first = await client.get("/v1/worklist-rules", headers=admin)
    assert first.status_code == 200
    assert first.json() == {
        "care": None,
        "complaint_sla": None,
        "near_miss": None,
        "gone_quiet": None,
        "updated_at": None,
    }
    await lifecycle(client, as_role)
    put = await client.put("/v1/worklist-rules", headers={**admin, "If-Match": first.headers["etag"]}, json=RULES)
    assert put.status_code == 200, put.text
    assert put.json()["care"] == {
        "birthdays": True,
        "anniversaries": True,
        "holidays": True,
        "days_before": 7,
        "holiday_days_before": 14,
    }
    assert put.json()["near_miss"] == {"share": "0.10"}
    stale = await client.put("/v1/worklist-rules", headers={**admin, "If-Match": first.headers["etag"]}, json={})
    assert stale.status_code == 412
    read = await client.get("/v1/worklist-rules", headers=admin)
    assert read.json() == put.json() and read.headers["etag"] == put.headers["etag"]
    assert (
        await client.get("/v1/worklist-rules", headers={**admin, "If-None-Match": read.headers["etag"]})
    ).status_code == 304

    bad = [
        ({"near_miss": {"share": "0.9"}}, "/near_miss/share"),
        ({"care": {"days_before": 61}}, "/care/days_before"),
        ({"complaint_sla": {"days": 5, "days_by_category": {"nosuch": 1}}}, "/complaint_sla/days_by_category/nosuch"),
        ({"gone_quiet": {**RULES["gone_quiet"], "quiet_tiers": ["asleep"]}}, "/gone_quiet/quiet_tiers/0"),
        (
            {"gone_quiet": {**RULES["gone_quiet"], "valuable_tiers": ["private", "diamond"]}},
            "/gone_quiet/valuable_tiers/1",
        ),
        ({"gone_quiet": {**RULES["gone_quiet"], "lifecycle_policy_key": "nosuch"}}, "/gone_quiet/lifecycle_policy_key"),
        ({"gone_quiet": {**RULES["gone_quiet"], "min_churn_risk": "1.5"}}, "/gone_quiet/min_churn_risk"),
        ({"gone_quiet": {**RULES["gone_quiet"], "min_churn_risk": -0.1}}, "/gone_quiet/min_churn_risk"),
        ({"care": {"sometimes": True}}, "/care/sometimes"),
    ]
    for body, pointer in bad:
        response = await client.put("/v1/worklist-rules", headers=admin, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["pointer"].startswith(pointer), response.json()
    off = await client.put("/v1/worklist-rules", headers=admin, json={"care": None})
    assert off.status_code == 200 and off.json()["near_miss"] is None and off.json()["care"] is None
    audited = (
        await session.execute(
            text(
                "SELECT action, before IS NULL, after -> 'near_miss' FROM audit_event "
                "WHERE entity_type = 'worklist_rules' ORDER BY id"
            )
        )
    ).all()
    assert audited == [("worklist.rules", False, {"share": "0.10"}), ("worklist.rules", False, None)]


async def test_holidays_are_created_once_listed_changed_and_removed(client, as_role, wealth, session):
    admin = as_role("admin")
    spring = {
        "holiday_key": "spring-festival-2027",
        "name": "Spring Festival",
        "names": {"zh-CN": "春节"},
        "date": "2027-02-06",
    }
    created = await client.post("/v1/care-calendar/holidays", headers={**admin, "Idempotency-Key": "h-1"}, json=spring)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/v1/care-calendar/holidays/spring-festival-2027"
    replayed = await client.post("/v1/care-calendar/holidays", headers={**admin, "Idempotency-Key": "h-1"}, json=spring)
    assert replayed.headers["idempotent-replayed"] == "true"
    assert (await client.post("/v1/care-calendar/holidays", headers=admin, json=spring)).status_code == 409
    for key, day in (("mid-autumn-2027", "2027-09-15"), ("mid-autumn-2026", "2026-09-25")):
        body = {"holiday_key": key, "name": "Mid-Autumn Festival", "date": day}
        assert (await client.post("/v1/care-calendar/holidays", headers=admin, json=body)).status_code == 201
    bad = await client.post(
        "/v1/care-calendar/holidays", headers=admin, json={**spring, "holiday_key": "x y", "date": "2027-02-30"}
    )
    assert bad.status_code == 422 and {e["pointer"] for e in bad.json()["errors"]} == {"/holiday_key", "/date"}

    page = (await client.get("/v1/care-calendar/holidays", headers=admin, params={"year": 2027, "limit": 1})).json()
    assert [h["holiday_key"] for h in page["items"]] == ["spring-festival-2027"] and page["next_cursor"]
    rest = (
        await client.get(
            "/v1/care-calendar/holidays", headers=admin, params={"year": 2027, "cursor": page["next_cursor"]}
        )
    ).json()
    assert [h["holiday_key"] for h in rest["items"]] == ["mid-autumn-2027"] and rest["next_cursor"] is None

    read = await client.get("/v1/care-calendar/holidays/mid-autumn-2027", headers=admin)
    assert read.json()["date"] == "2027-09-15"
    etag = read.headers["etag"]
    changed = await client.patch(
        "/v1/care-calendar/holidays/mid-autumn-2027",
        headers={**admin, "If-Match": etag},
        json={"names": {"zh-CN": "中秋节"}},
    )
    assert changed.status_code == 200 and changed.json()["names"] == {"zh-CN": "中秋节"}
    stale = await client.patch(
        "/v1/care-calendar/holidays/mid-autumn-2027", headers={**admin, "If-Match": etag}, json={"date": "2027-09-16"}
    )
    assert stale.status_code == 412
    nulled = await client.patch("/v1/care-calendar/holidays/mid-autumn-2027", headers=admin, json={"date": None})
    assert nulled.status_code == 422 and nulled.json()["errors"][0]["pointer"] == "/date"
    assert (await client.delete("/v1/care-calendar/holidays/mid-autumn-2026", headers=admin)).status_code == 204
    assert (await client.get("/v1/care-calendar/holidays/mid-autumn-2026", headers=admin)).status_code == 404
    assert (await client.delete("/v1/care-calendar/holidays/mid-autumn-2026", headers=admin)).status_code == 404
    actions = (
        (await session.execute(text("SELECT action FROM audit_event WHERE entity_type = 'care_holiday' ORDER BY id")))
        .scalars()
        .all()
    )
    assert actions == ["holiday.create"] * 3 + ["holiday.update", "holiday.delete"]
