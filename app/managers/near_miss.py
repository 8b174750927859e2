"""Near-miss upgrades for one manager's customers: those within the configured share of the next tier of their
manager's policy, measured by the very gap computation the benefits view shows (app.benefits.customer.tier_gap
over the facts stored with the assignment). Bounded by the portfolio (at most the manager's capacity), read in one
statement and written in one."""

from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.benefits.customer import tier_gap
from app.benefits.queries import Held
from app.managers import task_queries
from app.tiering.assignment.compile import cached_explainer, explainer


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def near_miss(gap: dict[str, Any] | None, share: Decimal) -> tuple[Decimal, list[dict[str, Any]]] | None:
    """(the largest share of its threshold any unmet condition still needs, those conditions) when the customer
    can close the gap and every unmet condition on the cheapest way is a number within `share` of its threshold;
    None otherwise."""
    if gap is None or gap["met"] or gap["closable"] != "by_customer" or not gap["cheapest"]:
        return None
    leaves = [leaf for leaf in gap["conditions"] if leaf["on_cheapest_path"]]
    worst = Decimal(0)
    for leaf in leaves:
        distance, threshold = _number(leaf["distance"]), _number(leaf["threshold"])
        if distance is None or threshold is None or threshold == 0:
            return None
        needed = distance / abs(threshold)
        if needed > share:
            return None
        worst = max(worst, needed)
    return worst, leaves


def reason_of(policy_key: str, tier: str, worst: Decimal, leaves: list[dict[str, Any]]) -> str:
    parts = [
        f"{leaf['attribute']} {leaf['value']} of {leaf['threshold']} ({leaf['distance']} to go)" for leaf in leaves
    ]
    return f"Within {worst * 100:.1f}% of {tier} ({policy_key}): " + "; ".join(parts) + "."


async def generate(session: AsyncSession, manager_id: int, policy_key: str, share: Decimal, today: date) -> int:
    """Add the near-miss tasks of the manager's customers (once per target tier and month, none while one is
    open); how many were added."""
    rows = (await session.execute(task_queries.NEAR_MISS_CANDIDATES, {"manager_id": manager_id, "today": today})).all()
    customer_ids, periods, reasons = [], [], []
    for row in rows:
        compiled = cached_explainer(row.version_id, row.version_updated_at)
        if compiled is None:
            compiled = await explainer(session, row.version_id, row.version_updated_at)
        higher = [t for t in compiled.tiers if t["rank"] > row.rank]
        if not higher:
            continue
        target = min(higher, key=lambda t: t["rank"])["code"]
        held = Held(policy_key, row.tier, row.rank, row.tier, None, False, row.facts or [], compiled)
        found = near_miss(tier_gap(held, target), share)
        if found is None:
            continue
        customer_ids.append(row.customer_id)
        periods.append(f"{target}:{today:%Y-%m}")
        reasons.append(reason_of(policy_key, target, *found))
    if not customer_ids:
        return 0
    params = {"customer_ids": customer_ids, "periods": periods, "reasons": reasons, "today": today}
    return (await session.execute(task_queries.TASKS_INSERT, {**params, "kind": "near_miss_upgrade"})).rowcount
