"""The demo bank's worklists: after the demo's managers and worklist stories, the wealth managers' worklists
through HTTP hold every kind of task, each with a reason quoting its numbers, and a holiday of the care calendar
(2027's Spring Festival) shows before it; a second load adds nothing twice."""

from datetime import date

from sqlalchemy import text

from app.core.pagination import PageRequest
from app.demo import generate_demo_bank
from app.managers import worklist
from app.managers.demo import DEMO_WEALTH_MANAGERS, load_demo_managers, load_demo_worklists
from app.reports.churn import fit_and_store
from app.tiering.assignment.refresh import refresh_tiers
from app.tiering.policies import load_default_policies

KINDS = {"downgrade_at_risk", "cadence_overdue", "care_date", "complaint_overdue", "near_miss_upgrade", "gone_quiet"}


async def all_tasks(client, as_role, manager: str) -> list[dict]:
    tasks, cursor = [], None
    while True:
        params = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        response = await client.get(
            f"/v1/relationship-managers/{manager}/worklist", headers=as_role("admin"), params=params
        )
        assert response.status_code == 200, response.text
        tasks += response.json()["items"]
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return tasks


async def test_the_demo_wealth_managers_have_every_kind_of_task(client, as_role, session):
    await generate_demo_bank(session, 600, seed=3)
    await load_default_policies(session)
    ids = list(await session.scalars(text("SELECT id FROM customer ORDER BY id")))
    await refresh_tiers(session, ids, id_range=None)
    await load_demo_managers(session)
    assert await fit_and_store(session, "demo") is not None  # as `tierwise demo` does
    first = await load_demo_worklists(session)
    await session.commit()
    assert first["holidays"] == 24 and first["complaints"] > 0 and first["contacted"] > 0 and first["moved_out"] > 0

    kinds: dict[str, set[str]] = {}
    churn_reasons: list[str] = []
    for manager in DEMO_WEALTH_MANAGERS:
        tasks = await all_tasks(client, as_role, manager)
        assert all(task["reason"] and task["due_on"] for task in tasks)
        kinds[manager] = {task["kind"] for task in tasks}
        churn_reasons += [task["reason"] for task in tasks if "by churn model version 1" in task["reason"]]
    union = set().union(*kinds.values())
    assert churn_reasons, "no valuable customer at or above the demo's churn threshold got a task"
    assert union == KINDS, union
    for manager in DEMO_WEALTH_MANAGERS:  # each has its stories: at risk, cadence, complaints
        assert {"downgrade_at_risk", "cadence_overdue", "complaint_overdue"} <= kinds[manager], (manager, kinds)

    # The Spring Festival of 2027 (2027-02-06) shows 30 days before, for every customer of the manager.
    rm = (await session.execute(text("SELECT id FROM relationship_manager WHERE manager_id = 'RM002'"))).scalar()
    await worklist.worklist(session, "RM002", PageRequest(after=None, limit=1), today=date(2027, 1, 20))
    spring = await session.scalar(
        text(
            "SELECT count(*) FROM manager_task t JOIN manager_assignment ma ON ma.customer_id = t.customer_id "
            "WHERE ma.manager_id = :rm AND t.period = 'holiday:spring-festival-2027' "
            "AND t.reason = 'Spring Festival on 2027-02-06: a greeting is due 30 days before.' "
            "AND t.due_on = DATE '2027-01-07'"
        ),
        {"rm": rm},
    )
    assert spring == await session.scalar(
        text("SELECT count(*) FROM manager_assignment WHERE manager_id = :rm"), {"rm": rm}
    )
    await session.commit()

    before = await session.scalar(text("SELECT count(*) FROM manager_task"))
    again = await load_demo_worklists(session)
    await session.commit()
    assert again == {"holidays": 0, "moved_out": 0, "contacted": 0, "complaints": 0}
    for manager in DEMO_WEALTH_MANAGERS:
        await all_tasks(client, as_role, manager)
    assert await session.scalar(text("SELECT count(*) FROM manager_task")) == before
