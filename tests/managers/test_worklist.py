"""A manager's worklist through HTTP, from real tiers and contacts: a downgrade at risk with its due date, a
contact cadence overdue per the tier's cadence (data), each task once, worked with an outcome and not generated
again, moving with the customer on reassignment, its outcome erased with the customer."""

from datetime import date, timedelta

from sqlalchemy import text

from tests.factories import WEALTH_GRACE_DAYS
from tests.managers.helpers import add_manager, make_customer, run, set_balance


async def worklist(client, as_role, manager: str) -> list[dict]:
    response = await client.get(f"/v1/relationship-managers/{manager}/worklist", headers=as_role("admin"))
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_tasks_are_generated_once_worked_and_move_with_the_customer(client, as_role, wealth, session):
    admin = as_role("admin")
    await add_manager(client, as_role, "A", capacity=5)
    await add_manager(client, as_role, "B", capacity=5)
    await make_customer(client, as_role, "T1", "620000.00")
    await make_customer(client, as_role, "T2", "620000.00")
    await run(client, as_role)  # one each: A 1/5, B 1/5
    owner = {
        c: (await client.get(f"/v1/customers/{c}/relationship-manager", headers=admin)).json() for c in ("T1", "T2")
    }
    t1_manager = owner["T1"]["manager"]["manager_id"]
    assert await worklist(client, as_role, t1_manager) == []  # nothing due

    await set_balance(client, as_role, "T1", "1000.00")  # at risk: qualifies for mass, keeps wealth in grace
    [at_risk] = await worklist(client, as_role, t1_manager)
    due = date.today() + timedelta(days=WEALTH_GRACE_DAYS)
    assert (at_risk["customer_id"], at_risk["kind"], at_risk["due_on"]) == ("T1", "downgrade_at_risk", due.isoformat())
    assert "Qualifies for mass" in at_risk["reason"] and "keeps wealth until " + due.isoformat() in at_risk["reason"]
    assert [t["id"] for t in await worklist(client, as_role, t1_manager)] == [at_risk["id"]]  # not generated twice

    # Cadence as data: wealth customers every 30 days. T2 was assigned 31 days ago and never contacted.
    cadence = await client.put("/v1/contact-cadences/wealth/wealth", headers=admin, json={"days": 30})
    assert cadence.status_code == 200 and cadence.json()["days"] == 30
    bad = await client.put("/v1/contact-cadences/wealth/diamond", headers=admin, json={"days": 30})
    assert bad.status_code == 422 and bad.json()["errors"][0]["parameter"] == "tier"
    await session.execute(
        text(
            "UPDATE manager_assignment SET assigned_at = now() - interval '31 days' "
            "WHERE customer_id = (SELECT id FROM customer WHERE external_id = 'T2')"
        )
    )
    await session.commit()
    t2_manager = owner["T2"]["manager"]["manager_id"]
    overdue = [t for t in await worklist(client, as_role, t2_manager) if t["customer_id"] == "T2"]
    assert [(t["kind"], t["due_on"]) for t in overdue] == [
        ("cadence_overdue", (date.today() - timedelta(days=1)).isoformat())
    ]
    assert "every 30 days" in overdue[0]["reason"]

    # Worked: done with an outcome, recorded with the contact; it does not come back.
    contacted = await client.post(
        "/v1/customers/T2/contacts", headers=admin, json={"kind": "call", "channel": "phone", "outcome": "reached"}
    )
    assert contacted.status_code == 201
    done = await client.patch(
        f"/v1/manager-tasks/{overdue[0]['id']}", headers=admin, json={"state": "done", "outcome": "Called; all well."}
    )
    assert done.status_code == 200 and done.json()["state"] == "done" and done.json()["closed_by"] == "test-admin"
    assert [t for t in await worklist(client, as_role, t2_manager) if t["customer_id"] == "T2"] == []
    again = await client.patch(
        f"/v1/manager-tasks/{overdue[0]['id']}", headers=admin, json={"state": "dismissed", "outcome": "x"}
    )
    assert again.status_code == 409 and again.json()["code"] == "task_closed"

    # Snoozed: gone until the day; a snooze needs a later day.
    early = await client.patch(
        f"/v1/manager-tasks/{at_risk['id']}", headers=admin, json={"state": "snoozed", "outcome": "Later."}
    )
    assert early.status_code == 422 and early.json()["errors"][0]["pointer"] == "/snoozed_until"
    tomorrow = (date.today() + timedelta(days=1)).isoformat()
    snoozed = await client.patch(
        f"/v1/manager-tasks/{at_risk['id']}",
        headers=admin,
        json={"state": "snoozed", "outcome": "Client travelling.", "snoozed_until": tomorrow},
    )
    assert snoozed.status_code == 200
    assert [t for t in await worklist(client, as_role, t1_manager) if t["customer_id"] == "T1"] == []
    await session.execute(text("UPDATE manager_task SET snoozed_until = current_date WHERE state = 'snoozed'"))
    await session.commit()
    assert [t["id"] for t in await worklist(client, as_role, t1_manager) if t["customer_id"] == "T1"] == [at_risk["id"]]

    # Reassigned: the task moves with the customer.
    other = "B" if t1_manager == "A" else "A"
    moved = await client.put(
        "/v1/customers/T1/relationship-manager", headers=admin, json={"manager_id": other, "reason": "Coverage."}
    )
    assert moved.status_code == 200, moved.text
    assert [t["id"] for t in await worklist(client, as_role, other) if t["customer_id"] == "T1"] == [at_risk["id"]]
    assert [t for t in await worklist(client, as_role, t1_manager) if t["customer_id"] == "T1"] == []
    assert await session.scalar(text("SELECT count(*) FROM manager_task")) == 2

    # Erased: the outcomes (free text) go.
    assert (await client.delete("/v1/customers/T2", headers=admin)).status_code == 204
    outcomes = (await session.execute(text("SELECT outcome FROM manager_task ORDER BY id"))).scalars().all()
    assert sorted(outcomes, key=str) == sorted(["Client travelling.", None], key=str)


async def test_a_cadence_path_outside_the_names_is_a_422(client, as_role, wealth):
    for path, parameter in (("/v1/contact-cadences/0/0", "policy_key"), ("/v1/contact-cadences/wealth/-x", "tier")):
        response = await client.put(path, headers=as_role("admin"), json={"days": 30})
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["parameter"] == parameter
    listed = await client.get("/v1/contact-cadences", headers=as_role("admin"))
    assert listed.status_code == 200 and listed.json()["items"] == []
