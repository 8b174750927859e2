"""Demo managers: a private-banking manager, two wealth managers and a service team for the iron fans, contact
cadences (private every 30 days, wealth 60, iron fans 90), then an assignment run, so that /docs has portfolios,
worklists, a coverage report and a customer's manager to show; the worklist rules, the care calendar's holidays and a
few customers' stories that put every kind of task on the wealth managers' worklists."""

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.managers import service
from app.managers.models import CareHoliday
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


# The bank's care calendar: Chinese holidays of 2026 to 2028 on their dates (the lunar ones as published).
DEMO_HOLIDAYS = [
    ("new-year", "New Year's Day", "元旦", ("2026-01-01", "2027-01-01", "2028-01-01")),
    ("spring-festival", "Spring Festival", "春节", ("2026-02-17", "2027-02-06", "2028-01-26")),
    ("lantern-festival", "Lantern Festival", "元宵节", ("2026-03-03", "2027-02-20", "2028-02-09")),
    ("qingming", "Qingming Festival", "清明节", ("2026-04-05", "2027-04-05", "2028-04-04")),
    ("labour-day", "Labour Day", "劳动节", ("2026-05-01", "2027-05-01", "2028-05-01")),
    ("dragon-boat", "Dragon Boat Festival", "端午节", ("2026-06-19", "2027-06-09", "2028-05-28")),
    ("mid-autumn", "Mid-Autumn Festival", "中秋节", ("2026-09-25", "2027-09-15", "2028-10-03")),
    ("national-day", "National Day", "国庆节", ("2026-10-01", "2027-10-01", "2028-10-01")),
]
DEMO_RULES = {
    "care": {"days_before": 7, "holiday_days_before": 30},
    "complaint_sla": {"days": 5, "days_by_category": {"fraud": 1}},
    "near_miss": {"share": "0.10"},
    "gone_quiet": {
        "lifecycle_policy_key": "lifecycle",
        "quiet_tiers": ["declining", "dormant"],
        "valuable_policy_key": "wealth",
        "valuable_tiers": ["private", "wealth"],
        "min_churn_risk": "0.20",  # `tierwise demo` fits a churn model: the few most at risk get a task
    },
}
DEMO_WEALTH_MANAGERS = ("RM001", "RM002", "RM003")

# Per wealth manager, a few customers with a story (the smallest wealth customers first, by assets and then id, so
# the same bank gives the same stories and those near the next tier keep their own):
# two who moved 95% of their assets out over the last three months (a downgrade at risk once re-tiered), two
# last contacted 70 days ago (the cadence overdue), two with a complaint left open (10 days, fees; 3 days, fraud).
_STORIES = text("""
SELECT m.manager_id, c.external_id, c.id,
       row_number() OVER (
           PARTITION BY m.id ORDER BY (SELECT sum(h.balance) FROM holding h WHERE h.customer_id = c.id), c.id
       ) AS n
FROM manager_assignment ma
JOIN relationship_manager m ON m.id = ma.manager_id
JOIN customer c ON c.id = ma.customer_id
WHERE m.manager_id = ANY(:managers) AND ma.tier = 'wealth'
ORDER BY m.manager_id, c.id
""")
_MOVED_OUT = [
    text(f"UPDATE {table} SET {column} = round({column} * 0.05, 2) WHERE customer_id = ANY(:ids) AND {day}")
    for table, column, day in (
        ("customer_aum_daily", "aum", "day > current_date - 91"),
        ("holding_balance", "balance", "as_of > current_date - 91"),
        ("holding", "balance", "true"),
    )
]


async def load_demo_worklists(session: AsyncSession) -> dict[str, int]:
    """The demo bank's worklist rules, its holiday calendar, and a few stories per wealth manager (assets moved
    out, contacts 70 days ago, complaints left open), so that every kind of task shows on their worklists. Run
    after load_demo_managers; a second run adds nothing twice."""
    from datetime import UTC, date, datetime, timedelta

    from app.feedback import complaints as feedback_complaints
    from app.feedback.schemas import ComplaintIn
    from app.managers import rules
    from app.managers.models import ManagerContact
    from app.managers.rule_schemas import HolidayCreate, WorklistRulesSet
    from app.tiering.assignment.refresh import refresh_tiers

    await rules.set_rules(session, WorklistRulesSet.model_validate(DEMO_RULES))
    holidays = 0
    for key, name, chinese, days in DEMO_HOLIDAYS:
        for day in days:
            holiday_key = f"{key}-{day[:4]}"
            if (await session.scalar(select(CareHoliday.id).where(CareHoliday.holiday_key == holiday_key))) is None:
                body = HolidayCreate(
                    holiday_key=holiday_key, name=name, names={"zh-CN": chinese}, date=date.fromisoformat(day)
                )
                await rules.create_holiday(session, body)
                holidays += 1
    stories = (await session.execute(_STORIES, {"managers": list(DEMO_WEALTH_MANAGERS)})).all()
    now = datetime.now(UTC)
    moved, contacted, complaints = [], 0, 0
    for manager_id, external_id, customer_id, n in stories:
        if n in (1, 2):
            moved.append(customer_id)
        elif n in (3, 4):
            exists = await session.scalar(select(ManagerContact.id).where(ManagerContact.customer_id == customer_id))
            if exists is None:
                manager = await service.get_manager(session, manager_id)
                session.add(
                    ManagerContact(
                        customer_id=customer_id,
                        manager_id=manager.id,
                        kind="call",
                        channel="phone",
                        outcome="reached",
                        contacted_at=now - timedelta(days=70),
                        recorded_by="demo",
                    )
                )
                contacted += 1
        elif n in (5, 6):
            category, days = ("fees", 10) if n == 5 else ("fraud", 3)
            body = ComplaintIn(
                event_id=f"demo-complaint-{external_id}",
                customer_id=external_id,
                category=category,
                channel="phone",
                description="Demo complaint: a fee charged twice."
                if n == 5
                else "Demo complaint: a card payment not made by me.",
                opened_at=now - timedelta(days=days),
            )
            complaints += (await feedback_complaints.open_complaint(session, body, "demo"))[2]
    # Moved out once: a second load finds them in their grace already (qualified lower) and leaves them be.
    first_time = list(
        await session.scalars(
            text("SELECT customer_id FROM tier_assignment WHERE customer_id = ANY(:ids) AND lower_since IS NOT NULL"),
            {"ids": moved},
        )
    )
    moved = [customer_id for customer_id in moved if customer_id not in first_time]
    if moved:
        for statement in _MOVED_OUT:
            await session.execute(statement, {"ids": moved})
        await refresh_tiers(session, moved, id_range=None)
    await session.flush()
    return {"holidays": holidays, "moved_out": len(moved), "contacted": contacted, "complaints": complaints}
