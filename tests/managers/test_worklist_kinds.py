"""Every task kind of a manager's worklist through HTTP, from real data and the bank's rules (data): care dates
(a birthday, an onboarding anniversary, a holiday of the care calendar), a complaint past its SLA, a near-miss
upgrade measured like the benefits view's gap, a valuable customer gone quiet (the lifecycle policy), besides a
downgrade at risk and a cadence overdue; each with its reason and due date, once; done with a contact that is
recorded and counts toward the cadence; reasons and outcomes erased with the customer."""

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import text

from tests.managers.helpers import add_manager, make_customer, run, set_balance
from tests.managers.test_worklist import worklist

LIFECYCLE_TIERS = [
    {"code": "dormant", "label": "Dormant", "rank": 0, "condition": {"attr": "txn_count_90d", "op": "eq", "value": 0}},
    {"code": "active", "label": "Active", "rank": 30, "condition": {"always": True}},
]
RULES = {
    "care": {"days_before": 7, "holiday_days_before": 14},
    "complaint_sla": {"days": 5, "days_by_category": {"fraud": 1}},
    "near_miss": {"share": "0.10"},
    "gone_quiet": {
        "lifecycle_policy_key": "lifecycle",
        "quiet_tiers": ["dormant"],
        "valuable_policy_key": "wealth",
        "valuable_tiers": ["private"],
    },
}


def years_before(day: date, years: int) -> date:
    """The same day `years` earlier (29 February: the 28th)."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def profile(birthday_in: int = 180, anniversary_in: int = 200) -> dict:
    """A customer whose next birthday and onboarding anniversary are that many days away."""
    today = date.today()
    onboarded = years_before(today + timedelta(days=anniversary_in), 6)
    return {
        "birth_date": years_before(today + timedelta(days=birthday_in), 40).isoformat(),
        "onboarded_at": f"{onboarded.isoformat()}T10:00:00Z",
    }


async def lifecycle(client, as_role) -> None:
    admin = as_role("admin")
    body = {"policy_key": "lifecycle", "name": "Lifecycle", "tiers": LIFECYCLE_TIERS, "downgrade_grace_days": 0}
    assert (await client.post("/v1/tier-policies", headers=admin, json=body)).status_code == 201
    assert (await client.post("/v1/tier-policies/lifecycle/versions/1/activate", headers=admin)).status_code == 200


async def complaint(client, as_role, customer: str, category: str, days_ago: int, n: int) -> int:
    opened = (datetime.now(UTC) - timedelta(days=days_ago)).replace(microsecond=0).isoformat()
    body = {
        "event_id": f"cmp-{n}",
        "customer_id": customer,
        "category": category,
        "channel": "phone",
        "description": "Charged twice.",
        "opened_at": opened,
    }
    response = await client.post("/v1/feedback/complaints", headers=as_role("admin"), json=body)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def holiday(client, as_role, key: str, name: str, day: date) -> None:
    body = {"holiday_key": key, "name": name, "date": day.isoformat()}
    response = await client.post("/v1/care-calendar/holidays", headers=as_role("admin"), json=body)
    assert response.status_code == 201, response.text


async def test_a_worklist_shows_every_kind_with_reasons_once_and_done_records_the_contact(
    client, as_role, wealth, session
):
    admin = as_role("admin")
    today = date.today()
    await lifecycle(client, as_role)
    await add_manager(client, as_role, "RM", capacity=20)
    await make_customer(client, as_role, "BDAY", "620000.00", **profile(birthday_in=3))
    await make_customer(client, as_role, "ANNIV", "620000.00", **profile(anniversary_in=5))
    await make_customer(client, as_role, "LATER", "620000.00", **profile(birthday_in=20))  # outside the 7 days
    await make_customer(client, as_role, "NEAR", "9500000.00", **profile())  # 5% from private
    await make_customer(client, as_role, "FAR", "8000000.00", **profile())  # 20% from private
    await make_customer(client, as_role, "QUIET", "12000000.00", **profile())  # private and dormant
    await make_customer(client, as_role, "RISK", "620000.00", **profile())
    assert (await run(client, as_role))["assigned"] == 7
    await holiday(client, as_role, "mid-autumn-test", "Mid-Autumn Festival", today + timedelta(days=10))
    await holiday(client, as_role, "far-holiday", "Spring Festival", today + timedelta(days=30))
    await complaint(client, as_role, "FAR", "fees", 10, 1)  # SLA 5 days: 5 days past it
    await complaint(client, as_role, "ANNIV", "fraud", 2, 2)  # fraud: SLA 1 day
    await complaint(client, as_role, "LATER", "service", 3, 3)  # within its SLA
    await set_balance(client, as_role, "RISK", "1000.00")  # at risk: in its grace
    assert (await client.put("/v1/contact-cadences/wealth/wealth", headers=admin, json={"days": 30})).status_code == 200
    await session.execute(
        text(
            "UPDATE manager_assignment SET assigned_at = now() - interval '31 days' "
            "WHERE customer_id = (SELECT id FROM customer WHERE external_id = 'LATER')"
        )
    )
    await session.commit()

    before_rules = await worklist(client, as_role, "RM")
    assert {t["kind"] for t in before_rules} == {"downgrade_at_risk", "cadence_overdue"}  # the rest is off
    assert (await client.put("/v1/worklist-rules", headers=admin, json=RULES)).status_code == 200

    tasks = await worklist(client, as_role, "RM")
    by = {}
    for task in tasks:
        by.setdefault((task["kind"], task["customer_id"]), []).append(task)
    holiday_tasks = [t for (k, _), ts in by.items() if k == "care_date" for t in ts if "Mid-Autumn" in t["reason"]]
    assert len(holiday_tasks) == 7  # every customer of the manager
    assert {t["due_on"] for t in holiday_tasks} == {(today - timedelta(days=4)).isoformat()}  # 14 days before
    assert not any("Spring Festival" in t["reason"] for t in tasks)  # 30 days away

    [birthday] = [t for t in by[("care_date", "BDAY")] if "Birthday" in t["reason"]]
    assert birthday["due_on"] == (today + timedelta(days=3 - 7)).isoformat()
    assert f"Birthday on {(today + timedelta(days=3)).isoformat()} (40 years)" in birthday["reason"]
    [anniversary] = [t for t in by[("care_date", "ANNIV")] if "a customer" in t["reason"]]
    assert anniversary["reason"].startswith(f"6 years a customer on {(today + timedelta(days=5)).isoformat()}")
    assert not [t for t in by[("care_date", "LATER")] if "Birthday" in t["reason"]]

    [fees] = by[("complaint_overdue", "FAR")]
    assert "(fees) open since" in fees["reason"] and "10 days, past its SLA of 5 days" in fees["reason"]
    assert fees["due_on"] == (today - timedelta(days=5)).isoformat()
    [fraud] = by[("complaint_overdue", "ANNIV")]
    assert fraud["reason"].endswith("2 days, past its SLA of 1 day.")
    assert ("complaint_overdue", "LATER") not in by

    [near] = by[("near_miss_upgrade", "NEAR")]
    benefits = (await client.get("/v1/customers/NEAR/benefits", headers=as_role("app"))).json()
    [gap] = [t["gap"] for t in benefits["next_tiers"] if t["policy_key"] == "wealth"]
    [leaf] = [c for c in gap["conditions"] if c["on_cheapest_path"]]
    assert near["reason"] == (
        f"Within 5.0% of private (wealth): aum_avg_3m {leaf['value']} of {leaf['threshold']} "
        f"({leaf['distance']} to go)."
    )
    assert leaf["distance"] == "500000.00"
    assert ("near_miss_upgrade", "FAR") not in by and ("near_miss_upgrade", "QUIET") not in by  # too far; top tier

    [quiet] = by[("gone_quiet", "QUIET")]
    assert quiet["reason"] == (
        f"dormant (lifecycle) since {today.isoformat()}, a private customer: txn_count_90d 0 (eq 0); "
        "no transaction on record."
    )
    assert quiet["due_on"] == today.isoformat()
    assert ("gone_quiet", "NEAR") not in by  # dormant too, but wealth is not a valuable tier here

    assert ("downgrade_at_risk", "RISK") in by and ("cadence_overdue", "LATER") in by
    assert {kind for kind, _ in by} == {
        "care_date",
        "complaint_overdue",
        "near_miss_upgrade",
        "gone_quiet",
        "downgrade_at_risk",
        "cadence_overdue",
    }
    again = await worklist(client, as_role, "RM")
    assert sorted(t["id"] for t in again) == sorted(t["id"] for t in tasks)  # not generated twice

    # Done with the contact that did it: recorded (counting toward the cadence) and not back.
    [cadence] = by[("cadence_overdue", "LATER")]
    done = await client.patch(
        f"/v1/manager-tasks/{cadence['id']}",
        headers=admin,
        json={
            "state": "done",
            "outcome": "Called back.",
            "contact": {"kind": "call", "channel": "phone", "outcome": "reached"},
        },
    )
    assert done.status_code == 200, done.text
    contacts = (await client.get("/v1/customers/LATER/contacts", headers=admin)).json()["items"]
    assert [(c["id"], c["manager_id"], c["kind"], c["outcome"]) for c in contacts] == [
        (done.json()["contact_id"], "RM", "call", "reached")
    ]
    [holiday_later] = [t for t in by[("care_date", "LATER")] if "Mid-Autumn" in t["reason"]]
    wrong = await client.patch(
        f"/v1/manager-tasks/{holiday_later['id']}",
        headers=admin,
        json={
            "state": "dismissed",
            "outcome": "x",
            "contact": {"kind": "call", "channel": "phone", "outcome": "reached"},
        },
    )
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["pointer"] == "/contact"
    await session.execute(text("UPDATE manager_task SET period = 'older' WHERE kind = 'cadence_overdue'"))
    await session.commit()  # a new period would be a new task, but the contact resets the cadence
    after = await worklist(client, as_role, "RM")
    assert cadence["id"] not in {t["id"] for t in after}
    assert not [t for t in after if t["kind"] == "cadence_overdue"]
    assert len(after) == len(tasks) - 1
    closed = await client.patch(
        f"/v1/manager-tasks/{near['id']}", headers=admin, json={"state": "dismissed", "outcome": "Not interested."}
    )
    assert closed.status_code == 200 and closed.json()["contact_id"] is None
    assert not [t for t in await worklist(client, as_role, "RM") if t["kind"] == "near_miss_upgrade"]  # this month

    # Erased: the customer's task reasons (a birthday, an age) and outcomes go; the tasks stay, anonymous.
    assert (await client.delete("/v1/customers/BDAY", headers=admin)).status_code == 204
    erased = (
        await session.execute(
            text(
                "SELECT DISTINCT reason FROM manager_task WHERE customer_id NOT IN "
                "(SELECT id FROM customer WHERE erased_at IS NULL)"
            )
        )
    ).scalars()
    assert list(erased) == ["Erased with the customer."]
    assert not await session.scalar(text("SELECT count(*) FROM manager_task WHERE reason LIKE 'Birthday%'"))


async def test_rules_off_generate_nothing_of_their_kind(client, as_role, wealth, session):
    admin = as_role("admin")
    today = date.today()
    await add_manager(client, as_role, "RM", capacity=5)
    await make_customer(client, as_role, "B1", "9500000.00", **profile(birthday_in=2))
    await run(client, as_role)
    await holiday(client, as_role, "soon", "Mid-Autumn Festival", today + timedelta(days=3))
    rules = {"care": {"birthdays": False, "anniversaries": True, "holidays": False}, "near_miss": {"share": "0.01"}}
    assert (await client.put("/v1/worklist-rules", headers=admin, json=rules)).status_code == 200
    assert await worklist(client, as_role, "RM") == []  # birthday and holidays off; 5% is over 1%
    rules["care"]["holidays"] = True
    assert (await client.put("/v1/worklist-rules", headers=admin, json=rules)).status_code == 200
    [task] = await worklist(client, as_role, "RM")
    assert task["kind"] == "care_date" and task["reason"].startswith("Mid-Autumn Festival on")
    assert task["due_on"] == (today + timedelta(days=3 - 14)).isoformat()
