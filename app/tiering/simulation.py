"""A tier policy version evaluated before it applies: what-if for one hypothetical customer, and a simulation over
the whole population against the active version; each one SQL statement through the one compiler, writing nothing.
"""

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from app.rules import (
    compile_condition,
    compile_explanation,
    customer_features,
    explain_row,
    load_catalog,
    parse_condition,
    what_if_features,
)
from app.tiering.policies import active_version, get_policy, get_version, tier_case
from app.tiering.schemas import SimulationResult, TierExplanation, TierMigration, TierShare, WhatIfResult


async def evaluate_what_if(session: AsyncSession, key: str, number: int, attributes: Mapping[str, Any]) -> WhatIfResult:
    """The tier a hypothetical customer with these attribute values lands in, explained, in one SQL query."""
    policy = await get_policy(session, key)
    version = await get_version(session, policy, number)
    catalog = await load_catalog(session)
    features = what_if_features(catalog, attributes, pointer="/attributes")
    columns: list[ColumnElement[Any]] = []
    explained = []
    for i, tier in enumerate(version.tiers):
        condition = parse_condition(tier["condition"], f"/tiers/{i}/condition")
        columns.append(compile_condition(condition, catalog, features).label(f"t{i}"))
        leaves = compile_explanation(
            condition, catalog, features, pointer=f"/tiers/{i}/condition", label_prefix=f"t{i}"
        )
        columns += [column for leaf in leaves for column in leaf.columns]
        explained.append(leaves)
    row = (await session.execute(select(*columns).select_from(features))).mappings().one()
    explanation: list[TierExplanation] = []
    for i, tier in enumerate(version.tiers):
        matched = bool(row[f"t{i}"])
        explanation.append(
            TierExplanation(tier=tier["code"], matched=matched, conditions=explain_row(explained[i], row))
        )
        if matched:
            return WhatIfResult(tier=tier["code"], label=tier["label"], rank=tier["rank"], explanation=explanation)
    return WhatIfResult(tier=None, label=None, rank=None, explanation=explanation)


async def simulate_version(session: AsyncSession, key: str, number: int) -> SimulationResult:
    """A version against today's whole population, next to the active version, in one set-based statement."""
    policy = await get_policy(session, key)
    version = await get_version(session, policy, number)
    active = await active_version(session, policy)
    catalog = await load_catalog(session)
    to_tier = tier_case(version.tiers, catalog, customer_features).label("to_tier")
    from_tier = (
        tier_case(active.tiers, catalog, customer_features) if active is not None else sa.cast(sa.null(), sa.Text())
    ).label("from_tier")
    assigned = select(from_tier, to_tier).select_from(customer_features).subquery("assigned")
    statement = select(assigned.c.from_tier, assigned.c.to_tier, func.count().label("customers")).group_by(
        assigned.c.from_tier, assigned.c.to_tier
    )
    cells = [(row.from_tier, row.to_tier, row.customers) for row in (await session.execute(statement)).all()]

    population = sum(n for _, _, n in cells)
    per_tier: dict[str | None, int] = {tier["code"]: 0 for tier in version.tiers}
    for _, to, n in cells:
        per_tier[to] = per_tier.get(to, 0) + n
    distribution = [
        TierShare(tier=code, customers=n, share=round(n / population, 4) if population else 0.0)
        for code, n in per_tier.items()
        if code is not None or n
    ]

    order = {tier["code"]: i for i, tier in enumerate(version.tiers)}
    new_rank = {tier["code"]: tier["rank"] for tier in version.tiers}
    old_rank = {tier["code"]: tier["rank"] for tier in active.tiers} if active is not None else {}
    old_order = {tier["code"]: i for i, tier in enumerate(active.tiers)} if active is not None else {}
    upgrades = downgrades = unchanged = 0
    for frm, to, n in cells:
        if frm is None or to is None:
            continue
        if new_rank[to] > old_rank[frm]:
            upgrades += n
        elif new_rank[to] < old_rank[frm]:
            downgrades += n
        else:
            unchanged += n
    big = len(order) + len(old_order) + 1
    cells.sort(key=lambda c: (old_order.get(c[0], big), order.get(c[1], big)))
    migration = [TierMigration(from_=frm, to=to, customers=n) for frm, to, n in cells]
    return SimulationResult(
        population=population,
        distribution=distribution,
        against_version=active.version if active is not None else None,
        migration=migration,
        upgrades=upgrades,
        downgrades=downgrades,
        unchanged=unchanged,
    )
