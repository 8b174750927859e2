"""Valuable customers gone quiet, for one manager's customers: those in a valuable tier (wealth, private) whose
lifecycle tier is a quiet one (declining, dormant), each task's reason quoting what put them there: the conditions
of the quiet tier that hold, with the customer's values, read from the facts stored with the lifecycle assignment
through the same gap computation as the benefits view. Bounded by the portfolio; one read and one write."""

from datetime import date

from sqlalchemy.ext.asyncio import AsyncSession

from app.benefits.customer import tier_gap
from app.benefits.queries import Held
from app.managers import task_queries
from app.managers.rule_schemas import GoneQuietRule
from app.tiering.assignment.compile import cached_explainer, explainer


def _days(n: int) -> str:
    return f"{n} day" if n == 1 else f"{n} days"


def reason_of(row, policy_key: str, held_conditions: list[dict]) -> str:
    why = "; ".join(
        f"{c['attribute']} {'null' if c['value'] is None else c['value']} ({c['operator']} {c['threshold']})"
        for c in held_conditions
    )
    activity = (
        "no transaction on record"
        if row.days_since_txn is None
        else f"last transaction {_days(row.days_since_txn)} ago"
    )
    return (
        f"{row.tier} ({policy_key}) since {row.since}, a {row.valuable_tier} customer: "
        + (f"{why}; " if why else "by an override; ")
        + f"{activity}."
    )


async def generate(session: AsyncSession, manager_id: int, rule: GoneQuietRule, today: date) -> int:
    """Add the gone-quiet tasks of the manager's customers; how many were added."""
    params = {"manager_id": manager_id, "today": today, **rule.model_dump()}
    rows = (await session.execute(task_queries.GONE_QUIET_CANDIDATES, params)).all()
    customer_ids, periods, reasons = [], [], []
    for row in rows:
        compiled = cached_explainer(row.version_id, row.version_updated_at)
        if compiled is None:
            compiled = await explainer(session, row.version_id, row.version_updated_at)
        held = Held(rule.lifecycle_policy_key, row.tier, row.rank, row.tier, None, False, row.facts or [], compiled)
        gap = tier_gap(held, row.tier)
        holding = [c for c in gap["conditions"] if c["met"]] if gap is not None and gap["met"] else []
        customer_ids.append(row.customer_id)
        periods.append(row.period)
        reasons.append(reason_of(row, rule.lifecycle_policy_key, holding))
    if not customer_ids:
        return 0
    insert = {
        "customer_ids": customer_ids,
        "periods": periods,
        "reasons": reasons,
        "today": today,
        "kind": "gone_quiet",
    }
    return (await session.execute(task_queries.TASKS_INSERT, insert)).rowcount
