"""Reports: each one SQL aggregation over indexed tables; rates and intervals are worked out from its counts."""

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession

from app.customers.models import Holding
from app.customers.service import AUM_CATEGORIES
from app.products.models import Product
from app.reports.intervals import difference_interval, wilson_interval
from app.tiering import policies
from app.tiering.models import TierAssignment, TierTransition, effective_rank, effective_tier

NO_TIER = "-"
TREATMENT, HOLDOUT = "personalised", "holdout_popularity"


async def policy_and_labels(session: AsyncSession, key: str) -> tuple[int, dict[str, str]]:
    policy = await policies.get_policy(session, key)
    version = await policies.active_version(session, policy)
    return policy.id, ({tier["code"]: tier["label"] for tier in version.tiers} if version else {})


# ---- tier distribution -------------------------------------------------------------------------------------


def _tier_distribution_statement():
    aum = (
        select(Holding.customer_id, func.sum(Holding.balance).label("aum"))
        .join(Product, Product.code == Holding.product_code)
        .where(Product.category.in_(AUM_CATEGORIES))
        .group_by(Holding.customer_id)
        .subquery("aum")
    )
    tier = effective_tier().label("tier")
    return (
        select(
            tier,
            func.max(effective_rank()).label("rank"),
            func.count().label("customers"),
            func.coalesce(func.sum(aum.c.aum), 0).label("aum"),
        )
        .select_from(TierAssignment)
        .outerjoin(aum, aum.c.customer_id == TierAssignment.customer_id)
        .where(TierAssignment.policy_id == sa.bindparam("policy_id"))
        .group_by(tier)
        .order_by(sa.desc("rank"), tier)
    )


_TIER_DISTRIBUTION = _tier_distribution_statement()


async def tier_distribution(session: AsyncSession, policy: str) -> dict[str, Any]:
    """Customers and total AUM per effective tier of a policy: one grouped aggregate of assignments joined to each
    customer's AUM summed from holdings."""
    policy_id, labels = await policy_and_labels(session, policy)
    rows = (await session.execute(_TIER_DISTRIBUTION, {"policy_id": policy_id})).all()
    return {
        "policy_key": policy,
        "customers": sum(r.customers for r in rows),
        "aum": sum((r.aum for r in rows), Decimal(0)),
        "tiers": [
            {"tier": r.tier, "label": labels.get(r.tier), "rank": r.rank, "customers": r.customers, "aum": r.aum}
            for r in rows
        ],
    }


# ---- tier migrations ---------------------------------------------------------------------------------------

_TIER_MIGRATIONS = (
    select(TierTransition.from_code, TierTransition.to_code, TierTransition.direction, func.count().label("count"))
    .where(
        TierTransition.policy_id == sa.bindparam("policy_id"),
        TierTransition.at >= sa.bindparam("from_"),
        TierTransition.at < sa.bindparam("to"),
    )
    .group_by(TierTransition.from_code, TierTransition.to_code, TierTransition.direction)
)


async def tier_migrations(session: AsyncSession, policy: str, from_: datetime, to: datetime) -> dict[str, Any]:
    """The matrix of tier moves of a policy in [from, to), from the change feed (indexed by policy and time)."""
    policy_id, _ = await policy_and_labels(session, policy)
    rows = (await session.execute(_TIER_MIGRATIONS, {"policy_id": policy_id, "from_": from_, "to": to})).all()
    cells: dict[tuple[str | None, str], int] = {}
    directions = {"upgrade": 0, "downgrade": 0, "lateral": 0, "initial": 0}
    for row in rows:
        cells[(row.from_code, row.to_code)] = cells.get((row.from_code, row.to_code), 0) + row.count
        directions[row.direction] += row.count
    moves = [
        {"from_tier": f, "to_tier": t, "count": n}
        for (f, t), n in sorted(cells.items(), key=lambda item: (item[0][0] or "", item[0][1]))
    ]
    return {
        "policy_key": policy,
        "from": from_,
        "to": to,
        "moves": moves,
        "upgrades": directions["upgrade"],
        "downgrades": directions["downgrade"],
        "lateral": directions["lateral"],
        "initial": directions["initial"],
    }


# ---- recommendation funnel ---------------------------------------------------------------------------------

# Each recommendation's furthest stage in the range (seen < clicked < accepted < converted; any event means it was
# seen, a dismiss included), then counts per (product, tier) and per strategy in one pass with grouping sets.
_FUNNEL = text(f"""
WITH reached AS (
    SELECT recommendation_id, product_code, coalesce(tier_code, '{NO_TIER}') AS tier_code, strategy,
           max(CASE kind WHEN 'convert' THEN 4 WHEN 'accept' THEN 3 WHEN 'click' THEN 2 ELSE 1 END) AS stage
    FROM feedback_event
    WHERE occurred_at >= :from_ AND occurred_at < :to
    GROUP BY recommendation_id, product_code, tier_code, strategy
)
SELECT product_code, tier_code, strategy, GROUPING(strategy) AS by_product,
       count(*) AS impressions, count(*) FILTER (WHERE stage >= 2) AS clicks,
       count(*) FILTER (WHERE stage >= 3) AS accepts, count(*) FILTER (WHERE stage >= 4) AS conversions
FROM reached
GROUP BY GROUPING SETS ((product_code, tier_code), (strategy))
ORDER BY product_code, tier_code, strategy
""")


def rate(successes: int, trials: int) -> dict[str, Any]:
    interval = wilson_interval(successes, trials)
    return {
        "rate": successes / trials if trials else None,
        "interval": {"low": interval[0], "high": interval[1]} if interval else None,
    }


async def recommendation_funnel(session: AsyncSession, from_: datetime, to: datetime) -> dict[str, Any]:
    rows = (await session.execute(_FUNNEL, {"from_": from_, "to": to})).all()
    funnel, arms = [], {TREATMENT: (0, 0), HOLDOUT: (0, 0)}
    for r in rows:
        if r.by_product:
            funnel.append(
                {
                    "product_code": r.product_code,
                    "tier": r.tier_code,
                    "impressions": r.impressions,
                    "clicks": r.clicks,
                    "accepts": r.accepts,
                    "conversions": r.conversions,
                    "click_rate": rate(r.clicks, r.impressions),
                    "accept_rate": rate(r.accepts, r.impressions),
                    "conversion_rate": rate(r.conversions, r.impressions),
                }
            )
        else:
            arms[r.strategy] = (r.impressions, r.conversions)
    (n_t, x_t), (n_h, x_h) = arms[TREATMENT], arms[HOLDOUT]
    uplift = difference_interval(x_t, n_t, x_h, n_h)
    return {
        "from": from_,
        "to": to,
        "rows": funnel,
        "treatment": {"strategy": TREATMENT, "impressions": n_t, "conversions": x_t, "conversion_rate": rate(x_t, n_t)},
        "holdout": {"strategy": HOLDOUT, "impressions": n_h, "conversions": x_h, "conversion_rate": rate(x_h, n_h)},
        "uplift": ({"difference": uplift[0], "interval": {"low": uplift[1], "high": uplift[2]}} if uplift else None),
    }


# ---- satisfaction ------------------------------------------------------------------------------------------

_SATISFACTION = text(f"""
WITH latest_nps AS (
    SELECT DISTINCT ON (customer_id) customer_id, score
    FROM survey_response
    WHERE kind = 'nps' AND occurred_at >= :from_ AND occurred_at < :to
    ORDER BY customer_id, occurred_at DESC, id DESC
), answers AS (
    SELECT customer_id, 'nps' AS kind, score FROM latest_nps
    UNION ALL
    SELECT customer_id, 'csat', score FROM survey_response
    WHERE kind = 'csat' AND occurred_at >= :from_ AND occurred_at < :to
), per_tier AS (
    SELECT coalesce(effective_tier(a), '{NO_TIER}') AS tier,
           count(*) FILTER (WHERE s.kind = 'nps') AS nps_responses,
           count(*) FILTER (WHERE s.kind = 'nps' AND s.score >= 9) AS promoters,
           count(*) FILTER (WHERE s.kind = 'nps' AND s.score <= 6) AS detractors,
           count(*) FILTER (WHERE s.kind = 'csat') AS csat_responses,
           sum(s.score) FILTER (WHERE s.kind = 'csat') AS csat_sum
    FROM answers s
    LEFT JOIN tier_assignment a ON a.customer_id = s.customer_id AND a.policy_id = :policy_id
    GROUP BY 1
), complaints AS (
    SELECT status, category, GROUPING(status, category) AS grouping, count(*) AS count,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM resolved_at - opened_at) / 86400)
               FILTER (WHERE resolved_at IS NOT NULL) AS median_days
    FROM complaint
    WHERE opened_at >= :from_ AND opened_at < :to
    GROUP BY GROUPING SETS ((status), (category), ())
)
SELECT (SELECT coalesce(jsonb_agg(to_jsonb(p) ORDER BY p.tier), '[]') FROM per_tier p) AS tiers,
       (SELECT coalesce(jsonb_agg(to_jsonb(c)), '[]') FROM complaints c) AS complaints
""").columns(sa.column("tiers", JSONB), sa.column("complaints", JSONB))


def net_promoter_score(promoters: int, detractors: int, responses: int) -> float | None:
    return round(100 * (promoters - detractors) / responses, 1) if responses else None


async def satisfaction(session: AsyncSession, policy: str, from_: datetime, to: datetime) -> dict[str, Any]:
    """NPS (from each customer's latest answer in the range) and CSAT per effective tier, complaints opened in the
    range by status and category, and their median days to resolve: one statement."""
    policy_id, _ = await policy_and_labels(session, policy)
    row = (await session.execute(_SATISFACTION, {"policy_id": policy_id, "from_": from_, "to": to})).one()
    tiers = [
        {
            "tier": t["tier"],
            "nps_responses": t["nps_responses"],
            "promoters": t["promoters"],
            "detractors": t["detractors"],
            "nps": net_promoter_score(t["promoters"], t["detractors"], t["nps_responses"]),
            "csat_responses": t["csat_responses"],
            "csat_avg": round(t["csat_sum"] / t["csat_responses"], 2) if t["csat_responses"] else None,
        }
        for t in row.tiers
    ]
    responses = sum(t["nps_responses"] for t in tiers)
    csat_responses = sum(t["csat_responses"] for t in row.tiers)
    csat_sum = sum(t["csat_sum"] or 0 for t in row.tiers)
    total = next((c for c in row.complaints if c["grouping"] == 3), None)
    median = total["median_days"] if total else None
    return {
        "policy_key": policy,
        "from": from_,
        "to": to,
        "nps": net_promoter_score(sum(t["promoters"] for t in tiers), sum(t["detractors"] for t in tiers), responses),
        "nps_responses": responses,
        "csat_avg": round(csat_sum / csat_responses, 2) if csat_responses else None,
        "tiers": tiers,
        "complaints": total["count"] if total else 0,
        "complaints_by_status": sorted(
            ({"key": c["status"], "count": c["count"]} for c in row.complaints if c["grouping"] == 1),
            key=lambda c: c["key"],
        ),
        "complaints_by_category": sorted(
            ({"key": c["category"], "count": c["count"]} for c in row.complaints if c["grouping"] == 2),
            key=lambda c: c["key"],
        ),
        "median_days_to_resolve": round(median, 2) if median is not None else None,
    }
