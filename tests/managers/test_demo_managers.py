"""The demo bank's managers: its wealth and private customers assigned within capacity, the coverage report
answers on it, and a second load adds no manager twice and keeps every assignment."""

from sqlalchemy import text

from app.demo import generate_demo_bank
from app.managers.demo import DEMO_MANAGERS, load_demo_managers
from app.tiering.assignment.refresh import refresh_tiers
from app.tiering.policies import load_default_policies


async def test_demo_managers_serve_the_demo_bank_within_capacity(client, as_role, session):
    await generate_demo_bank(session, 600, seed=3)
    await load_default_policies(session)
    ids = list(await session.scalars(text("SELECT id FROM customer ORDER BY id")))
    await refresh_tiers(session, ids, id_range=None)
    first = await load_demo_managers(session)
    await session.commit()
    assert first["assigned"] > 0 and first["released"] == 0
    over = await session.scalar(
        text(
            "SELECT count(*) FROM relationship_manager m WHERE capacity < "
            "(SELECT count(*) FROM manager_assignment a WHERE a.manager_id = m.id)"
        )
    )
    assert over == 0
    outside = await session.scalar(
        text(
            "SELECT count(*) FROM manager_assignment ma JOIN relationship_manager m ON m.id = ma.manager_id "
            "JOIN tier_policy p ON p.key = m.policy_key "
            "JOIN tier_assignment a ON a.policy_id = p.id AND a.customer_id = ma.customer_id "
            "WHERE NOT effective_tier(a) = ANY(m.tiers)"
        )
    )
    assert outside == 0

    before = (await session.execute(text("SELECT customer_id, manager_id FROM manager_assignment"))).all()
    again = await load_demo_managers(session)
    await session.commit()
    assert (again["assigned"], again["released"], again["kept"]) == (0, 0, len(before))
    assert await session.scalar(text("SELECT count(*) FROM relationship_manager")) == len(DEMO_MANAGERS)

    report = await client.get("/v1/reports/manager-coverage", headers=as_role("admin"))
    assert report.status_code == 200, report.text
    wealth = {t["tier"]: t for t in report.json()["tiers"] if t["policy_key"] == "wealth"}
    assert wealth["wealth"]["with_manager"] == wealth["wealth"]["customers"] > 0  # room for every one
    loads = {m["manager_id"]: m for m in report.json()["managers"]}
    shares = [loads[m]["utilisation"] for m in ("RM001", "RM002", "RM003")]
    assert max(shares) - min(shares) <= 1 / 60  # filled evenly by capacity: within one customer's share
    assert sum(m["load"] for m in report.json()["managers"]) == len(before)
