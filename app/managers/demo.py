"""Demo managers: a private-banking manager, two wealth managers and a service team for the iron fans, contact
cadences (private every 30 days, wealth 60, iron fans 90), then an assignment run, so that /docs has portfolios,
worklists, a coverage report and a customer's manager to show."""

from sqlalchemy.ext.asyncio import AsyncSession

from app.managers import service
from app.managers.schemas import ManagerCreate

DEMO_MANAGERS = [
    ("RM001", "Li Wei", "private-banking", "wealth", ["private", "wealth"], 60),
    ("RM002", "Zhang Min", "wealth-east", "wealth", ["wealth"], 80),
    ("RM003", "Chen Jing", "wealth-west", "wealth", ["wealth"], 80),
    ("SVC01", "Iron-fan service team", "service", "loyalty", ["iron_fan"], 200),
]
DEMO_CADENCES = [("wealth", "private", 30), ("wealth", "wealth", 60), ("loyalty", "iron_fan", 90)]


async def load_demo_managers(session: AsyncSession) -> dict[str, int]:
    """Add the demo managers that are missing (those whose policy exists), then run the assignment; what the run
    did (kept, released, assigned, unassigned)."""
    for manager_id, name, team, policy_key, tiers, capacity in DEMO_MANAGERS:
        if await service.find_manager(session, manager_id) is not None:
            continue
        body = ManagerCreate(
            manager_id=manager_id,
            name=name,
            team=team,
            serves={"policy_key": policy_key, "tiers": tiers},
            capacity=capacity,
        )
        await service.create_manager(session, body)
    from app.managers.worklist import set_cadence

    for policy_key, tier, days in DEMO_CADENCES:
        await set_cadence(session, policy_key, tier, days)
    run = await service.run_assignment(session, "demo")
    return {"kept": run.kept, "released": run.released, "assigned": run.assigned, "unassigned": run.unassigned}
