"""Who an engagement programme may invite: the audience condition (compiled by the one compiler over the
customers' features), the optional tiers of a policy, marketing consent (as recommendations read it), and the
contact policy (the same contact_rule rows as recommendations).

Invitations are contacts under that policy: an invitation a customer has not answered counts as an ignored
impression, a declined one as a dismiss. A rule of scope `product` counts the outcomes of the same programme
(its target is `community:<id>` or `activity:<id>`), a rule of scope `category` those of every engagement
programme (the category `engagement`); a rule's channel, window, threshold and suppression days apply as they do
to offers. The other way round, the recommendations count invitations against offers: rules of scope `category`
count each in every product category (app/recommendations/queries.py)."""

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import InvalidInput
from app.rules import (
    check_condition,
    compile_condition,
    dump_condition,
    features_for_customers,
    load_catalog,
    parse_condition,
)
from app.rules.schema import Condition

_IDS = sa.bindparam("ids", type_=ARRAY(sa.BigInteger()))

_TIERED = text("""
SELECT a.customer_id FROM tier_assignment a JOIN tier_policy p ON p.id = a.policy_id
WHERE a.customer_id = ANY(:ids) AND p.key = :policy AND effective_tier(a) = ANY(:tiers)
""")


def invitation_outcomes(customers: str) -> str:
    """SQL: the programme invitations of the customers in `customers` (a FROM item `rc` with a column customer_id)
    as the contact policy counts them: (customer_id, target, channel, occurred_at, outcome); an unanswered
    invitation is an ignored impression, a declined one a dismiss, any other answer no outcome (null). The
    recommendations count them too (app/recommendations/queries.py)."""
    return f"""
    SELECT m.customer_id, 'community:' || m.community_id AS target, m.channel, m.invited_at AS occurred_at,
           CASE m.state WHEN 'declined' THEN 'dismiss' WHEN 'invited' THEN 'ignored_impression' END AS outcome
    FROM {customers} JOIN community_membership m ON m.customer_id = rc.customer_id
    UNION ALL
    SELECT p.customer_id, 'activity:' || p.activity_id, p.channel, p.invited_at,
           CASE p.state WHEN 'declined' THEN 'dismiss' WHEN 'invited' THEN 'ignored_impression' END
    FROM {customers} JOIN activity_participation p ON p.customer_id = rc.customer_id
"""


_SUPPRESSED = text(f"""
WITH outcomes AS ({invitation_outcomes("unnest(CAST(:ids AS bigint[])) AS rc(customer_id)")}
), fired AS (
    SELECT o.customer_id, min(r.name) AS rule
    FROM contact_rule r
    JOIN outcomes o ON o.outcome = r.outcome AND (r.channel IS NULL OR o.channel = r.channel)
         AND o.occurred_at > now() - make_interval(days => r.window_days)
    WHERE r.is_active AND (r.scope = 'category' OR o.target = :target)
    GROUP BY r.id, r.threshold, r.suppress_days, o.customer_id
    HAVING count(*) >= r.threshold AND max(o.occurred_at) > now() - make_interval(days => r.suppress_days)
)
SELECT customer_id, min(rule) AS rule FROM fired GROUP BY customer_id
""")


@dataclass(frozen=True)
class Audience:
    condition: dict[str, Any]
    policy_key: str | None
    tiers: list[str]


async def checked_audience(
    session: AsyncSession, condition: Condition, policy_key: str | None, tiers: list[str] | None
) -> dict[str, Any]:
    """The audience as stored JSON, after checking it with the compiler (422 at /audience/...) and the policy."""
    check_condition(condition, await load_catalog(session), "/audience")
    if policy_key is not None:
        known = await session.scalar(text("SELECT 1 FROM tier_policy WHERE key = :key"), {"key": policy_key})
        if known is None:
            raise InvalidInput("/audience_policy_key", f"no tier policy '{policy_key}'")
    return dump_condition(condition)


async def screen(
    session: AsyncSession, audience: Audience, customer_ids: list[int], target: str
) -> dict[int, tuple[str, str | None]]:
    """Each customer's screening: ("ok", None), ("not_in_audience", None), ("no_marketing_consent", None) or
    ("contact_policy", rule). One statement per check, each over the whole batch."""
    if not customer_ids:
        return {}
    features = features_for_customers(_IDS)
    admitted = compile_condition(parse_condition(audience.condition), await load_catalog(session), features)
    rows = (
        await session.execute(
            sa.select(features.c.customer_id, admitted.label("admitted"), features.c.marketing_consent),
            {"ids": customer_ids},
        )
    ).all()
    in_tiers: set[int] | None = None
    if audience.policy_key:
        in_tiers = set(
            (
                await session.scalars(
                    _TIERED, {"ids": customer_ids, "policy": audience.policy_key, "tiers": audience.tiers}
                )
            ).all()
        )
    suppressed = {
        row.customer_id: row.rule
        for row in (await session.execute(_SUPPRESSED, {"ids": customer_ids, "target": target})).all()
    }
    out: dict[int, tuple[str, str | None]] = {}
    for row in rows:
        if not row.admitted or (in_tiers is not None and row.customer_id not in in_tiers):
            out[row.customer_id] = ("not_in_audience", None)
        elif not row.marketing_consent:
            out[row.customer_id] = ("no_marketing_consent", None)
        elif row.customer_id in suppressed:
            out[row.customer_id] = ("contact_policy", suppressed[row.customer_id])
        else:
            out[row.customer_id] = ("ok", None)
    return out
