"""The population-wide statistics that rank: popularity and co-holding, refreshed by a job in set-based SQL, and
feedback counts; read a few hundred rows at a time (`RankingStats`), never computed per request."""

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core import invalidation

# Popularity of each product overall ('*') and within each tier of the primary policy.
_REFRESH_HOLDING_STATS = text("""
WITH live AS (
    SELECT c.id, coalesce(a.tier, '*') AS tier FROM customer c
    LEFT JOIN (SELECT a.customer_id, effective_tier(a) AS tier
               FROM tier_assignment a JOIN tier_policy p ON p.id = a.policy_id WHERE p.key = :primary_policy) a
           ON a.customer_id = c.id
    WHERE c.erased_at IS NULL
), sizes AS (
    SELECT tier, count(*) AS customers FROM live GROUP BY ROLLUP (tier)
), held AS (
    SELECT h.product_code, l.tier, count(*) AS holders
    FROM holding h JOIN live l ON l.id = h.customer_id GROUP BY ROLLUP (h.product_code, l.tier)
)
INSERT INTO product_holding_stat (product_code, tier_code, holders, customers, refreshed_at)
SELECT held.product_code, coalesce(held.tier, '*'), held.holders, sizes.customers, now()
FROM held JOIN sizes ON sizes.tier IS NOT DISTINCT FROM held.tier
WHERE held.product_code IS NOT NULL AND (held.tier IS NULL OR held.tier <> '*')
""")

# For each pair of products: customers holding both, and how many hold the first.
_REFRESH_CO_HOLDING = text("""
WITH totals AS (SELECT product_code, count(*) AS held_total FROM holding GROUP BY product_code)
INSERT INTO co_holding_stat (held_code, product_code, holding_both, held_total, refreshed_at)
SELECT a.product_code, b.product_code, count(*), max(t.held_total), now()
FROM holding a JOIN holding b ON b.customer_id = a.customer_id AND b.product_code <> a.product_code
JOIN totals t ON t.product_code = a.product_code
GROUP BY a.product_code, b.product_code
""")


async def refresh_stats(session: AsyncSession, primary_policy: str) -> dict[str, int]:
    """Recompute popularity and co-holding from today's holdings (in the caller's transaction)."""
    await session.execute(text("SELECT pg_advisory_xact_lock(7310, 4)"))  # one refresh at a time
    await session.execute(text("DELETE FROM product_holding_stat"))
    holding = (await session.execute(_REFRESH_HOLDING_STATS, {"primary_policy": primary_policy})).rowcount
    await session.execute(text("DELETE FROM co_holding_stat"))
    co = (await session.execute(_REFRESH_CO_HOLDING)).rowcount
    await invalidation.notify(session, invalidation.RANKING_STATS)  # every instance reads them again on commit
    return {"product_holding_stat": holding, "co_holding_stat": co}


@dataclass(frozen=True)
class RankingStats:
    """The population-wide statistics that rank, read in three small queries."""

    popularity: dict[tuple[str, str], float]
    """(product, tier of the primary policy or '*' for everyone): (holders + 1) / (customers + 2)."""
    co_holding: dict[str, dict[str, float]]
    """product: {held product: share of that product's holders who also hold this one}."""
    feedback: dict[tuple[str, str], tuple[int, int, int, int]]
    """(product, tier or '-' for customers without one): impressions, accepts, conversions, dismissals."""
    ranker: "ServingRanker | None" = None
    """The learned ranker's serving version, None when none serves (app/recommendations/learned/registry.py)."""

    @classmethod
    async def load(cls, connection) -> "RankingStats":
        popularity = {
            (r[0], r[1]): r[2]
            for r in await connection.fetch(
                "SELECT product_code, tier_code, (holders + 1)::float8 / (customers + 2) FROM product_holding_stat"
            )
        }
        co_holding: dict[str, dict[str, float]] = defaultdict(dict)
        for product, held, share in await connection.fetch(
            "SELECT product_code, held_code, holding_both::float8 / held_total FROM co_holding_stat"
        ):
            co_holding[product][held] = share
        feedback = {
            (r[0], r[1]): tuple(r[2:])
            for r in await connection.fetch(
                "SELECT product_code, tier_code, sum(impressions)::bigint, sum(accepts)::bigint, "
                "sum(converts)::bigint, "
                "sum(dismisses)::bigint FROM propensity_stat GROUP BY product_code, tier_code"
            )
        }
        serving = await connection.fetchrow(
            "SELECT version, (metrics ->> 'held_out_customers_with_adds')::float8 AS positives "
            "FROM ranker_model WHERE status = 'serving'"
        )
        ranker = ServingRanker(serving["version"], max(serving["positives"] or 0.0, 2.0)) if serving else None
        return cls(popularity=popularity, co_holding=dict(co_holding), feedback=feedback, ranker=ranker)


@dataclass(frozen=True)
class ServingRanker:
    version: int
    """Scores stored with an offer state are used only when this version stored them."""
    strength: float
    """The effective number of observations behind a calibrated propensity, for Thompson exploration: the held-out
    customers with adds the Platt calibration was fitted on (at least 2). Exploration draws from
    Beta(p x strength, (1 - p) x strength): mean p, spread shrinking as the calibration saw more outcomes."""
