"""A customer's benefits: in force (why, and the usage left), at risk while a downgrade waits out its grace (and
what keeps the tier), and, per policy, the next tier up with what it gives and the gap to it.

Tiers are read from the stored assignments (the effective tier: an override wins, a tier in grace is kept) and
gaps from the facts stored with them, through the version's compiled leaves (app.rules.gap): the same values GET
.../tiers explains. Extra conditions of attachments are compiled by the one compiler and evaluated for the
customer in one statement.

Conflicts: benefits of the same kind for the same thing (`applies_to`) conflict; the best value wins (a higher
value, then a benefit with a value over one without, then the higher tier rank, then the code), and the winner
lists what it supersedes. The same benefit given by several tiers is in force once, with every reason.
"""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import ARRAY

from app.benefits.models import Benefit
from app.benefits.queries import Held, catalogue, customer_state, is_in_force
from app.benefits.texts import localized
from app.rules import compile_condition, features_for_customers, load_catalog, parse_condition
from app.rules.gap import condition_gap
from app.rules.schema import Operator

CONFLICT_RULE = (
    "Benefits of the same kind for the same thing (applies_to) conflict: the best value wins (the higher value; "
    "one with a value over one without; then the higher tier rank; then the code). The same benefit from several "
    "tiers counts once, with every reason."
)


@dataclass
class Entitlement:
    benefit: Benefit
    reasons: list[tuple[str, str, int, dict | None]] = field(default_factory=list)  # (policy, tier, rank, condition)

    @property
    def best_rank(self) -> int:
        return max(rank for _, _, rank, _ in self.reasons)


def period_bounds(period: str, today: date) -> tuple[date, date]:
    """The calendar period (UTC) holding `today`: its first day and the first day of the next."""
    if period == "year":
        return date(today.year, 1, 1), date(today.year + 1, 1, 1)
    first_month = today.month if period == "month" else 3 * ((today.month - 1) // 3) + 1
    start = date(today.year, first_month, 1)
    months = 1 if period == "month" else 3
    following = first_month - 1 + months
    return start, date(today.year + following // 12, following % 12 + 1, 1)


async def _conditions_hold(sessionmaker, customer_id: int, conditions: list[dict]) -> list[bool]:
    """Each condition evaluated for the customer by the one compiler, in one statement."""
    if not conditions:
        return []
    features = features_for_customers(bindparam("ids", type_=ARRAY(sa.BigInteger())))
    async with sessionmaker() as session:
        catalog = await load_catalog(session)
        columns = [
            compile_condition(parse_condition(condition), catalog, features).label(f"c{i}")
            for i, condition in enumerate(conditions)
        ]
        row = (await session.execute(select(*columns).select_from(features), {"ids": [customer_id]})).first()
    return [bool(value) for value in row] if row is not None else [False] * len(conditions)


async def entitlements(sessionmaker, customer_id: int, held: list[Held], benefits: list[Any]) -> dict[str, Entitlement]:
    """Every benefit a tier the customer holds gives now (its extra condition holding), by code."""
    tier_of = {h.policy: h for h in held}
    candidates: list[tuple[Benefit, dict, int]] = []
    for benefit in benefits:
        for attachment in benefit.attachments:
            holding = tier_of.get(attachment["policy_key"])
            if holding is not None and holding.tier == attachment["tier"]:
                candidates.append((benefit, attachment, holding.rank))
    conditioned = [a["condition"] for _, a, _ in candidates if a.get("condition") is not None]
    holds = iter(await _conditions_hold(sessionmaker, customer_id, conditioned))
    entitled: dict[str, Entitlement] = {}
    for benefit, attachment, rank in candidates:
        if attachment.get("condition") is not None and not next(holds):
            continue
        entitled.setdefault(benefit.code, Entitlement(benefit)).reasons.append(
            (attachment["policy_key"], attachment["tier"], rank, attachment.get("condition"))
        )
    return entitled


def _strength(entitlement: Entitlement) -> tuple:
    value = entitlement.benefit.value
    return (value is not None, value if value is not None else Decimal(0), entitlement.best_rank)


def resolve_conflicts(entitled: dict[str, Entitlement]) -> tuple[list[Entitlement], dict[str, list[Entitlement]]]:
    """(the winners, in code order; what each winner supersedes, by its code)."""
    groups: dict[tuple[str, str], list[Entitlement]] = {}
    winners: list[Entitlement] = []
    for code in sorted(entitled):
        entitlement = entitled[code]
        if entitlement.benefit.applies_to is None:
            winners.append(entitlement)
        else:
            groups.setdefault((entitlement.benefit.kind, entitlement.benefit.applies_to), []).append(entitlement)
    superseded: dict[str, list[Entitlement]] = {}
    for members in groups.values():
        # the best value wins; among equals, the higher tier, then the first code
        ordered = sorted(sorted(members, key=lambda e: e.benefit.code), key=_strength, reverse=True)  # stable
        winners.append(ordered[0])
        superseded[ordered[0].benefit.code] = ordered[1:]
    return sorted(winners, key=lambda e: e.benefit.code), superseded


def usage_of(benefit: Benefit, used: int, today: date) -> dict[str, Any] | None:
    """The period's usage (a Usage as a dict), None for an unlimited benefit."""
    if benefit.usage_limit is None:
        return None
    start, end = period_bounds(benefit.usage_period, today)
    return dict(
        limit=benefit.usage_limit,
        period=benefit.usage_period,
        period_start=start,
        period_end=end,
        used=used,
        left=max(benefit.usage_limit - used, 0),
    )


_conditions: dict[tuple[int, int], Any] = {}  # a version's tier conditions, parsed (versions held are never edited)


def tier_gap(held: Held, tier_code: str) -> dict[str, Any] | None:
    """The gap to a tier of the held policy's version, from the facts stored with the assignment (None when the
    version has no such tier)."""
    compiled = held.compiled
    index = next((i for i, tier in enumerate(compiled.tiers) if tier["code"] == tier_code), None)
    if index is None or len(held.facts) < 2 * sum(len(leaves) for leaves in compiled.leaves):
        return None
    offset = sum(len(leaves) for leaves in compiled.leaves[:index])
    leaves = compiled.leaves[index]
    facts = [(held.facts[2 * (offset + j)], held.facts[2 * (offset + j) + 1]) for j in range(len(leaves))]
    pointer = f"/tiers/{index}/condition"
    key = (compiled.version_id, index)
    if key not in _conditions:
        _conditions[key] = parse_condition(compiled.tiers[index]["condition"], pointer)
    gap = condition_gap(_conditions[key], leaves, facts, pointer=pointer)
    return {"met": gap.met, "closable": gap.closable, "cheapest": gap.cheapest, "conditions": gap.conditions}


def _with_operators(node: Any) -> Any:
    """A stored condition with its operators as the schema's enum (what the document serializer expects)."""
    if isinstance(node, dict):
        return {k: Operator(v) if k == "op" else _with_operators(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_with_operators(member) for member in node]
    return node


def _brief(benefit: Benefit, language: str, default: str) -> dict[str, Any]:
    texts = localized(benefit.texts, language, default)
    return {
        "code": benefit.code,
        "kind": benefit.kind,
        "name": texts["name"],
        "description": texts["description"],
        "value": benefit.value,
        "unit": benefit.unit,
    }


async def customer_benefits(
    connection, sessionmaker, external_id: str, language: str, default: str, now: datetime | None = None
) -> dict[str, Any]:
    """The CustomerBenefits document as dicts (CUSTOMER_BENEFITS_JSON writes it): one read on `connection` (a
    driver connection), sessions of `sessionmaker` only for what this process has not compiled yet and for extra
    conditions."""
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    state = await customer_state(connection, sessionmaker, external_id)
    customer_id, held = state.customer_id, state.held
    benefits = [b for b in await catalogue(connection, state.catalogue_version) if is_in_force(b, now)]
    winners, superseded = resolve_conflicts(await entitlements(sessionmaker, customer_id, held, benefits))
    used = {
        w.benefit.id: state.usage.get((w.benefit.id, period_bounds(w.benefit.usage_period, today)[0]), 0)
        for w in winners
        if w.benefit.usage_limit is not None
    }

    in_force = []
    for winner in winners:
        benefit = winner.benefit
        in_force.append(
            dict(
                **_brief(benefit, language, default),
                applies_to=benefit.applies_to,
                channels=benefit.channels,
                why=[{"policy_key": p, "tier": t, "condition": _with_operators(c)} for p, t, _, c in winner.reasons],
                usage=usage_of(benefit, used.get(benefit.id, 0), today),
                supersedes=[
                    dict(
                        code=loser.benefit.code,
                        value=loser.benefit.value,
                        policy_key=loser.reasons[0][0],
                        tier=loser.reasons[0][1],
                        by=benefit.code,
                    )
                    for loser in superseded.get(benefit.code, [])
                ],
            )
        )
    in_force_codes = {w.benefit.code for w in winners}

    by_tier: dict[tuple[str, str], list[Any]] = {}
    for benefit in benefits:
        for attachment in benefit.attachments:
            by_tier.setdefault((attachment["policy_key"], attachment["tier"]), []).append(benefit)

    def given_by(policy: str, tier: str) -> list[Any]:
        return by_tier.get((policy, tier), [])

    at_risk, next_tiers = [], []
    for holding in held:
        if holding.lower_since is not None and not holding.override and holding.qualified != holding.tier:
            kept_by_others = {w.benefit.code for w in winners if any(p != holding.policy for p, _, _, _ in w.reasons)}
            lower = {b.code for b in given_by(holding.policy, holding.qualified)}
            lost = [
                w.benefit
                for w in winners
                if any(p == holding.policy and t == holding.tier for p, t, _, _ in w.reasons)
                and w.benefit.code not in kept_by_others
                and w.benefit.code not in lower
            ]
            at_risk.append(
                dict(
                    policy_key=holding.policy,
                    tier=holding.tier,
                    downgrade_to=holding.qualified,
                    downgrade_on=(holding.lower_since + timedelta(days=holding.compiled.grace_days)).date(),
                    benefits=[_brief(b, language, default) for b in lost],
                    keeps_it=tier_gap(holding, holding.tier),
                )
            )
        higher = [t for t in holding.compiled.tiers if t["rank"] > holding.rank]
        if higher:
            target = min(higher, key=lambda t: t["rank"])
            next_tiers.append(
                dict(
                    policy_key=holding.policy,
                    tier=target["code"],
                    label=target["label"],
                    rank=target["rank"],
                    benefits=[
                        _brief(b, language, default)
                        for b in given_by(holding.policy, target["code"])
                        if b.code not in in_force_codes
                    ],
                    gap=tier_gap(holding, target["code"]),
                )
            )
    return dict(
        customer_id=external_id,
        language=language,
        conflict_rule=CONFLICT_RULE,
        in_force=in_force,
        at_risk=at_risk,
        next_tiers=next_tiers,
    )
