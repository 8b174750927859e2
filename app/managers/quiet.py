"""Valuable customers gone quiet, for one manager's customers: those in a valuable tier (wealth, private) whose
lifecycle tier is a quiet one (declining, dormant), each task's reason quoting what put them there: the conditions
of the quiet tier that hold, with the customer's values, read from the facts stored with the lifecycle assignment
through the same gap computation as the benefits view. Bounded by the portfolio; one read and one write.

With the rule's `min_churn_risk`, also those of the valuable customers whose churn_risk is at or above it: the score
the features view gives (the newest churn model), computed by customer_features_for over the portfolio's valuable
customers only (never the population), the reason quoting the probability and the model's version. Once a month per
customer, none while a gone-quiet task of theirs is open; none with no churn model fitted."""

from datetime import date
from decimal import Decimal

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
    """Add the gone-quiet tasks of the manager's customers (by lifecycle tier, then by churn risk); how many were
    added."""
    added = await _generate_quiet(session, manager_id, rule, today)
    if rule.min_churn_risk is not None:
        added += await _generate_churn(session, manager_id, rule, today)
    return added


def churn_reason_of(risk: Decimal, threshold: Decimal, version: int, policy_key: str, valuable_tier: str) -> str:
    return (
        f"churn_risk {risk} (ge {threshold}) by churn model version {version}, "
        f"a {valuable_tier} ({policy_key}) customer."
    )


async def _generate_churn(session: AsyncSession, manager_id: int, rule: GoneQuietRule, today: date) -> int:
    if await session.scalar(task_queries.CHURN_MODEL_EXISTS) is not True:
        return 0
    period = f"churn:{today:%Y-%m}"
    params = {
        "manager_id": manager_id,
        "valuable_policy_key": rule.valuable_policy_key,
        "valuable_tiers": rule.valuable_tiers,
        "period": period,
    }
    tiers = {row.customer_id: row.valuable_tier for row in await session.execute(task_queries.CHURN_CANDIDATES, params)}
    if not tiers:
        return 0
    threshold = Decimal(rule.min_churn_risk)
    scores = {"customer_ids": list(tiers), "min_churn_risk": threshold}
    rows = (await session.execute(task_queries.CHURN_SCORES, scores)).all()
    if not rows:
        return 0
    insert = {
        "customer_ids": [row.customer_id for row in rows],
        "periods": [period] * len(rows),
        "reasons": [
            churn_reason_of(row.churn_risk, threshold, row.version, rule.valuable_policy_key, tiers[row.customer_id])
            for row in rows
        ],
        "today": today,
        "kind": "gone_quiet",
    }
    return (await session.execute(task_queries.TASKS_INSERT, insert)).rowcount


async def _generate_quiet(session: AsyncSession, manager_id: int, rule: GoneQuietRule, today: date) -> int:
    params = {"manager_id": manager_id, "today": today, **rule.model_dump(exclude={"min_churn_risk"})}
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
