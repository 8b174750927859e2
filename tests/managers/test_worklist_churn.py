"""Valuable customers at churn risk on a manager's worklist: with the gone-quiet rule's `min_churn_risk`, those whose
churn_risk (the features view's score by the newest churn model, fitted here on a small balance history) is at or
above it get a gone-quiet task quoting the probability and the model version, once; those below do not; with no
model fitted, nothing."""

from datetime import date
from decimal import Decimal

from sqlalchemy import text

from app.reports.churn import fit_and_store
from tests.managers.helpers import add_manager, make_customer, run
from tests.managers.test_worklist import worklist
from tests.reports.test_churn import _balances

# Nobody is in the quiet tier (no assets below zero): every gone-quiet task here is a churn-risk one.
LIFECYCLE_TIERS = [
    {"code": "dormant", "label": "Dormant", "rank": 0, "condition": {"attr": "aum_avg_3m", "op": "lt", "value": 0}},
    {"code": "active", "label": "Active", "rank": 30, "condition": {"always": True}},
]
HISTORIES = {
    "C1": [1000000, 1000000, 500000, 500000, 500000],
    "C2": [1000000, 1200000, 1300000, 1300000, 1400000],
    "C3": [2000000, 2000000, 2000000, 900000, 900000],
    "C4": [5000000, 5100000, 5200000, 5300000, 5400000],
}


async def _setup(client, as_role, session, tiers=LIFECYCLE_TIERS) -> None:
    admin = as_role("admin")
    body = {"policy_key": "lifecycle", "name": "Lifecycle", "tiers": tiers, "downgrade_grace_days": 0}
    assert (await client.post("/v1/tier-policies", headers=admin, json=body)).status_code == 201
    assert (await client.post("/v1/tier-policies/lifecycle/versions/1/activate", headers=admin)).status_code == 200
    await add_manager(client, as_role, "RM", capacity=10)
    for external_id, history in HISTORIES.items():
        await make_customer(client, as_role, external_id, f"{history[-1]}.00")
        await _balances(session, external_id, history)
    await session.commit()
    assert (await run(client, as_role))["assigned"] == len(HISTORIES)


async def _rules(client, as_role, min_churn_risk) -> None:
    rules = {
        "gone_quiet": {
            "lifecycle_policy_key": "lifecycle",
            "quiet_tiers": ["dormant"],
            "valuable_policy_key": "wealth",
            "valuable_tiers": ["private", "wealth"],
            "min_churn_risk": min_churn_risk,
        }
    }
    response = await client.put("/v1/worklist-rules", headers=as_role("admin"), json=rules)
    assert response.status_code == 200, response.text
    assert response.json()["gone_quiet"]["min_churn_risk"] == min_churn_risk


async def _risks(session) -> dict[str, Decimal]:
    rows = await session.execute(
        text("SELECT c.external_id, f.churn_risk FROM customer_features f JOIN customer c ON c.id = f.customer_id")
    )
    return dict(rows.all())


async def test_customers_at_or_above_the_churn_threshold_get_a_task_once(client, as_role, wealth, session):
    await _setup(client, as_role, session)
    await _rules(client, as_role, "0.0000")
    assert await worklist(client, as_role, "RM") == []  # no churn model fitted: nothing, even at 0

    model = await fit_and_store(session, "test", horizon_months=1, decline_share=Decimal("0.15"), holdout_months=1)
    await session.commit()
    risks = await _risks(session)
    ranked = sorted(risks, key=risks.get, reverse=True)
    assert len(set(risks.values())) == 4 and None not in risks.values()
    threshold = risks[ranked[1]]  # the second riskiest is exactly at it: in; the two below: out
    await _rules(client, as_role, str(threshold))

    tasks = await worklist(client, as_role, "RM")
    assert sorted(t["customer_id"] for t in tasks) == sorted(ranked[:2])
    for task in tasks:
        customer = task["customer_id"]
        assert task["kind"] == "gone_quiet" and task["due_on"] == date.today().isoformat()
        assert task["reason"] == (
            f"churn_risk {risks[customer]} (ge {threshold}) by churn model version {model.version}, "
            "a wealth (wealth) customer."
        )
    again = await worklist(client, as_role, "RM")
    assert sorted(t["id"] for t in again) == sorted(t["id"] for t in tasks)  # not generated twice
    count = "SELECT count(*) FROM manager_task WHERE kind = 'gone_quiet'"
    assert await session.scalar(text(count)) == 2

    # Done: not back this month, even with a newer model version scoring the same customers.
    done = await client.patch(
        f"/v1/manager-tasks/{tasks[0]['id']}", headers=as_role("admin"), json={"state": "dismissed", "outcome": "Ok."}
    )
    assert done.status_code == 200, done.text
    await fit_and_store(session, "test", horizon_months=1, decline_share=Decimal("0.15"), holdout_months=1)
    await session.commit()
    assert [t["id"] for t in await worklist(client, as_role, "RM")] == [tasks[1]["id"]]
    assert await session.scalar(text(count)) == 2

    # Off again: no new tasks, even for a customer above it.
    await _rules(client, as_role, None)
    await session.execute(text("DELETE FROM manager_task"))
    await session.commit()
    assert await worklist(client, as_role, "RM") == []


async def test_a_quiet_customer_gets_one_task_and_each_manager_only_their_own(client, as_role, wealth, session):
    low = {"attr": "aum", "op": "lt", "value": 600000}
    quiet = {"code": "dormant", "label": "Dormant", "rank": 0, "condition": low}
    await _setup(client, as_role, session, [quiet, LIFECYCLE_TIERS[1]])  # C1 (500000) is dormant
    await add_manager(client, as_role, "RM2", capacity=10)
    admin = as_role("admin")
    for customer in ("C2", "C4"):  # to the other manager, by hand
        moved = await client.put(
            f"/v1/customers/{customer}/relationship-manager",
            headers=admin,
            json={"manager_id": "RM2", "reason": "Moved to the east team."},
        )
        assert moved.status_code == 200, moved.text
    await fit_and_store(session, "test", horizon_months=1, decline_share=Decimal("0.15"), holdout_months=1)
    await session.commit()
    await _rules(client, as_role, "0")  # every valuable customer is at or above it

    mine = {t["customer_id"]: t for t in await worklist(client, as_role, "RM")}
    theirs = {t["customer_id"]: t for t in await worklist(client, as_role, "RM2")}
    assert sorted(mine) == ["C1", "C3"] and sorted(theirs) == ["C2", "C4"]
    assert mine["C1"]["reason"].startswith("dormant (lifecycle) since ")  # its quiet tier's task, not a second one
    assert mine["C3"]["reason"].startswith("churn_risk ") and theirs["C2"]["reason"].startswith("churn_risk ")
    kinds = "SELECT customer_id, count(*) FROM manager_task WHERE kind = 'gone_quiet' GROUP BY customer_id"
    assert sorted(n for _, n in (await session.execute(text(kinds))).all()) == [1, 1, 1, 1]
