"""Next-best-product: candidates filtered in SQL (eligibility through the one compiler, suitability, holdings,
consent, contact policy), ranked by propensity x value x lever, each with its reasons; served lists are stored.

Propensity = a Beta posterior of the product's acceptance rate within the customer's tier (prior: the product's
popularity in that tier, worth `prior_strength` observations; evidence: recommendation feedback), Thompson-sampled
for exploration, times the customer's co-holding lift (how much likelier customers holding what this customer holds
are to hold it) and a win-back boost for a product held recently. With little feedback the prior dominates.
"""

import hashlib
import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import bindparam, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.customers.errors import CustomerNotFound
from app.customers.models import Customer
from app.products.models import Product
from app.rules import (ExplainedLeaf, compile_condition, compile_explanation, explain_row, features_for_customers,
                       load_catalog, parse_condition)
from app.rules.compile import facts_expression, facts_mapping

EPSILON = 0.005


@dataclass(frozen=True)
class CatalogSnapshot:
    """The product catalog compiled for candidate selection: one query gives a customer's features and every
    product's eligibility (with the facts behind it)."""

    products: dict[str, Product]
    leaves: dict[str, list[ExplainedLeaf]]
    customer_query: Any
    version: tuple


_snapshot: CatalogSnapshot | None = None

# The customer, by the bank's id, as the array customer_features_for takes.
CUSTOMER_BY_EXTERNAL_ID = sa.func.array(
    select(Customer.id).where(Customer.external_id == bindparam("external_id"), Customer.erased_at.is_(None))
    .scalar_subquery())
FEATURE_COLUMNS = ("customer_id", "external_id", "held_products", "risk_tolerance", "marketing_consent", "aum")


# The catalog's version, selected with every customer query: a changed catalog is noticed without a round trip.
_VERSION_SQL = text("SELECT (SELECT count(*) FROM product), (SELECT max(id) FROM product), "
                    "(SELECT max(updated_at) FROM product), (SELECT count(*) FROM custom_attribute_definition)")


def _version_columns() -> list[Any]:
    return [select(sa.func.count()).select_from(Product).scalar_subquery().label("catalog_products"),
            select(sa.func.max(Product.id)).scalar_subquery().label("catalog_max_id"),
            select(sa.func.max(Product.updated_at)).scalar_subquery().label("catalog_updated_at"),
            sa.literal_column("(SELECT count(*) FROM custom_attribute_definition)").label("catalog_attributes")]


def _version_of(row) -> tuple:
    return (row["catalog_products"], row["catalog_max_id"], row["catalog_updated_at"], row["catalog_attributes"])


async def catalog_snapshot(session: AsyncSession, version: tuple | None = None) -> CatalogSnapshot:
    """The compiled catalog; rebuilt when the version seen with the last customer query differs."""
    global _snapshot
    if _snapshot is not None and (version is None or version == _snapshot.version):
        return _snapshot
    version = tuple((await session.execute(_VERSION_SQL)).one())
    products = {p.code: p for p in (await session.scalars(select(Product).order_by(Product.code))).all()}
    catalog = await load_catalog(session)
    features = features_for_customers(CUSTOMER_BY_EXTERNAL_ID)
    columns = [features.c[name] for name in FEATURE_COLUMNS] + _version_columns()
    leaves: dict[str, list[ExplainedLeaf]] = {}
    for i, (code, product) in enumerate(products.items()):
        if not product.eligibility:
            continue
        condition = parse_condition(product.eligibility, "/eligibility")
        leaves[code] = compile_explanation(condition, catalog, features, pointer="/eligibility", label_prefix=f"p{i}")
        columns += [compile_condition(condition, catalog, features).label(f"eligible_{code}"),
                    facts_expression(leaves[code]).label(f"facts_{code}")]
    _snapshot = CatalogSnapshot(products=products, leaves=leaves, customer_query=select(*columns), version=version)
    return _snapshot


# Every product with the first filter that removes it (NULL: a candidate) and the statistics that rank it.
_CANDIDATES = text("""
WITH tiers AS (
    SELECT p.key, CASE WHEN a.override_code IS NOT NULL AND (a.override_expires_at IS NULL
                            OR a.override_expires_at > now()) THEN a.override_code ELSE a.tier_code END AS tier
    FROM tier_assignment a JOIN tier_policy p ON p.id = a.policy_id WHERE a.customer_id = :customer_id
), primary_tier AS (
    SELECT coalesce((SELECT tier FROM tiers WHERE key = :primary_policy), '*') AS tier
), outcomes AS (
    SELECT e.product_code, pr.category, e.channel, e.occurred_at,
           CASE WHEN e.kind = 'dismiss' THEN 'dismiss'
                WHEN NOT EXISTS (SELECT 1 FROM feedback_event x WHERE x.recommendation_id = e.recommendation_id
                                 AND x.kind IN ('click', 'accept', 'convert')) THEN 'ignored_impression' END AS outcome
    FROM feedback_event e JOIN product pr ON pr.code = e.product_code
    WHERE e.customer_id = :customer_id AND e.kind IN ('impression', 'dismiss')
      AND e.occurred_at > CAST(:now AS timestamptz) - interval '400 days'
), suppressed AS (
    SELECT r.scope, CASE r.scope WHEN 'product' THEN o.product_code ELSE o.category END AS target,
           min(r.name) AS rule
    FROM contact_rule r JOIN outcomes o ON o.outcome = r.outcome AND (r.channel IS NULL OR o.channel = r.channel)
         AND o.occurred_at > CAST(:now AS timestamptz) - make_interval(days => r.window_days)
    WHERE r.is_active
    GROUP BY r.id, r.scope, r.threshold, r.suppress_days, 2
    HAVING count(*) >= r.threshold
       AND max(o.occurred_at) > CAST(:now AS timestamptz) - make_interval(days => r.suppress_days)
), previously AS (
    SELECT product_code, max(as_of) AS last_held FROM holding_balance
    WHERE customer_id = :customer_id AND as_of > CAST(:now AS timestamptz)::date - CAST(:winback_days AS integer)
    GROUP BY product_code
)
SELECT p.code,
       CASE
         WHEN NOT p.is_active OR p.active_from > CAST(:now AS timestamptz)
              OR p.active_to <= CAST(:now AS timestamptz) THEN 'inactive'
         WHEN NOT (CAST(:channel AS text) = ANY(p.channels)) THEN 'not_on_channel'
         WHEN p.code = ANY(CAST(:exclude AS text[])) THEN 'excluded_by_caller'
         WHEN p.code = ANY(CAST(:held AS text[])) THEN 'already_held'
         WHEN p.code = ANY(CAST(:ineligible AS text[])) THEN 'not_eligible'
         WHEN cardinality(p.target_tiers) > 0
              AND NOT (p.target_tiers && coalesce((SELECT array_agg(tier::text) FROM tiers), '{}')) THEN 'not_target_tier'
         WHEN p.risk_level > coalesce(CAST(:risk_tolerance AS integer), 1) THEN 'not_suitable'
         WHEN NOT CAST(:consent AS boolean) AND NOT p.is_service THEN 'no_marketing_consent'
         WHEN NOT p.is_service AND EXISTS (SELECT 1 FROM suppressed s WHERE s.target =
              CASE s.scope WHEN 'product' THEN p.code ELSE p.category END) THEN 'contact_policy'
       END AS filtered_by,
       (SELECT s.rule FROM suppressed s WHERE s.target = CASE s.scope WHEN 'product' THEN p.code
                                                                       ELSE p.category END LIMIT 1) AS contact_rule,
       pt.tier AS tier,
       (SELECT sum(c.holding_both::float8 / c.held_total) FROM co_holding_stat c
        WHERE c.product_code = p.code AND c.held_code = ANY(CAST(:held AS text[]))) AS co_holding_sum,
       (SELECT (s.holders + 1)::float8 / (s.customers + 2) FROM product_holding_stat s
        WHERE s.product_code = p.code AND s.tier_code = pt.tier) AS tier_popularity,
       (SELECT (s.holders + 1)::float8 / (s.customers + 2) FROM product_holding_stat s
        WHERE s.product_code = p.code AND s.tier_code = '*') AS popularity,
       f.impressions, f.accepts, f.converts, f.dismisses,
       pv.last_held
FROM product p
CROSS JOIN primary_tier pt
LEFT JOIN previously pv ON pv.product_code = p.code
LEFT JOIN LATERAL (
    SELECT coalesce(sum(impressions), 0)::bigint AS impressions, coalesce(sum(accepts), 0)::bigint AS accepts,
           coalesce(sum(converts), 0)::bigint AS converts, coalesce(sum(dismisses), 0)::bigint AS dismisses
    FROM propensity_stat s
    WHERE s.product_code = p.code AND s.tier_code = CASE pt.tier WHEN '*' THEN '-' ELSE pt.tier END  -- '-': no tier
) f ON true
WHERE CAST(:explain AS boolean) OR p.is_active
ORDER BY p.code
""")


@dataclass
class Ranked:
    product: Product
    score: float
    propensity: float
    value: float
    lever: float
    reasons: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RecommendationResult:
    customer_id: int
    external_id: str
    tier: str | None
    strategy: str
    items: list[Ranked]
    filtered: list[dict[str, Any]]
    list_id: int | None = None
    recommendation_ids: list[uuid.UUID] = field(default_factory=list)


def in_holdout(external_id: str, share: float) -> bool:
    """A stable share of customers gets the unpersonalised baseline, so that uplift can be measured."""
    bucket = int.from_bytes(hashlib.sha256(f"holdout:{external_id}".encode()).digest()[:4], "big") / 2**32
    return bucket < share


def _money(value: Any) -> str:
    return f"{Decimal(str(value)):,.0f}"


async def recommend(session: AsyncSession, settings: Settings, external_id: str, *, channel: str, limit: int,
                    exclude: list[str] = (), explain: bool = False, seed: int | None = None,
                    explore: bool = True, now: datetime | None = None, record: bool = True,
                    strategy: str | None = None) -> RecommendationResult:
    """Rank the products a customer may be offered now on `channel`; store the served list when `record`."""
    snapshot = await catalog_snapshot(session)
    row = (await session.execute(snapshot.customer_query, {"external_id": external_id})).mappings().first()
    if row is not None and _version_of(row) != snapshot.version:  # the catalog changed: compile it again
        snapshot = await catalog_snapshot(session, _version_of(row))
        row = (await session.execute(snapshot.customer_query, {"external_id": external_id})).mappings().first()
    if row is None:
        raise CustomerNotFound(external_id)
    customer_id = row["customer_id"]
    now = now or datetime.now().astimezone()
    ineligible = [code for code in snapshot.leaves if not row[f"eligible_{code}"]]
    held = list(row["held_products"] or [])
    stats = (await session.execute(_CANDIDATES, {
        "customer_id": customer_id, "primary_policy": settings.primary_policy, "channel": channel,
        "exclude": list(exclude), "held": held, "ineligible": ineligible, "risk_tolerance": row["risk_tolerance"],
        "consent": bool(row["marketing_consent"]), "now": now, "winback_days": settings.winback_days,
        "explain": explain})).mappings().all()

    strategy = strategy or ("holdout_popularity" if in_holdout(row["external_id"], settings.holdout_share)
                            else "personalised")
    rng = random.Random(seed) if seed is not None else random.Random()
    ranked, filtered, tier = [], [], None
    for stat in stats:
        product = snapshot.products.get(stat["code"])
        if product is None:  # created since the snapshot: next snapshot will have it
            continue
        tier = None if stat["tier"] == "*" else stat["tier"]
        if stat["filtered_by"] is not None:
            filtered.append(_filtered(product, stat, row))
            continue
        ranked.append(_score(product, stat, row, snapshot, settings, strategy, rng, explore, len(held), tier))
    ranked.sort(key=lambda r: (-r.score, r.product.code))
    result = RecommendationResult(customer_id=customer_id, external_id=row["external_id"], tier=tier,
                                  strategy=strategy, items=ranked[:limit], filtered=filtered if explain else [])
    if record and result.items:
        await _record(session, result, channel)
    return result


def _score(product: Product, stat, row, snapshot: CatalogSnapshot, settings: Settings, strategy: str,
           rng: random.Random, explore: bool, held_count: int, tier: str | None) -> Ranked:
    tier_popularity = stat["tier_popularity"] or stat["popularity"] or EPSILON
    reasons: list[dict[str, Any]] = []
    if strategy == "holdout_popularity":
        reasons.append({"code": "POPULAR_IN_TIER", "text": f"held by {tier_popularity:.0%} of "
                                                           f"{tier or 'all'} customers", "value": tier_popularity})
        return Ranked(product, tier_popularity, tier_popularity, 1.0, 1.0, reasons + _suitability(product, row))
    # the Beta posterior of the acceptance rate in the tier, its prior centred on the tier's popularity
    successes = max(stat["accepts"], stat["converts"])
    failures = max(stat["impressions"] - successes, stat["dismisses"], 0)
    alpha = settings.prior_strength * tier_popularity + successes
    beta = settings.prior_strength * (1 - tier_popularity) + failures
    rate = rng.betavariate(alpha, beta) if explore else alpha / (alpha + beta)
    personal = (stat["co_holding_sum"] or 0.0) / held_count if held_count else tier_popularity
    lift = min(max((personal + EPSILON) / (tier_popularity + EPSILON), 0.1), 10.0)
    winback = settings.winback_boost if stat["last_held"] is not None else 1.0
    propensity = min(rate * lift * winback, 1.0)
    value, lever = float(product.value_weight), float(product.lever)
    if held_count and stat["co_holding_sum"]:
        reasons.append({"code": "CO_HOLDING", "text": f"held by {personal:.0%} of customers with your products",
                        "value": round(personal, 4)})
    if stat["impressions"] or stat["dismisses"]:
        reasons.append({"code": "LEARNED_PROPENSITY",
                        "text": f"accepted {successes} of {stat['impressions']} times offered to "
                                f"{tier or 'all'} customers", "value": round(alpha / (alpha + beta), 4)})
    if stat["last_held"] is not None:
        reasons.append({"code": "WIN_BACK", "text": f"held until {stat['last_held'].isoformat()}",
                        "value": stat["last_held"].isoformat()})
    for leaf in _eligibility_facts(product, row, snapshot):
        reasons.append({"code": "ELIGIBLE", "text": f"{leaf['attribute']} {_fmt(leaf['value'])} "
                                                    f"{_OPS.get(leaf['operator'], leaf['operator'])} "
                                                    f"{_fmt(leaf['threshold'])}", "value": leaf})
    if product.target_tiers:
        reasons.append({"code": "TIER_TARGET", "text": f"offered to {', '.join(product.target_tiers)} customers",
                        "value": list(product.target_tiers)})
    reasons += _suitability(product, row)
    return Ranked(product, propensity * value * lever, propensity, value, lever, reasons)


_OPS = {"gte": ">=", "gt": ">", "lte": "<=", "lt": "<", "eq": "=", "ne": "!=", "between": "between", "in": "in"}


def _fmt(value: Any) -> str:
    if isinstance(value, str):
        try:
            return _money(value) if "." in value or value.isdigit() else value
        except ArithmeticError:
            return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return _money(value)
    return str(value)


def _eligibility_facts(product: Product, row, snapshot: CatalogSnapshot) -> list[dict[str, Any]]:
    leaves = snapshot.leaves.get(product.code)
    if not leaves:
        return []
    facts = row[f"facts_{product.code}"]
    return [leaf for leaf in explain_row(leaves, facts_mapping(leaves, facts)) if leaf["result"]]


def _suitability(product: Product, row) -> list[dict[str, Any]]:
    tolerance = row["risk_tolerance"]
    text_ = (f"risk R{product.risk_level} <= tolerance {tolerance}" if tolerance is not None
             else f"risk R{product.risk_level}: offered without a valid risk assessment")
    return [{"code": "SUITABLE", "text": text_, "value": {"product_risk": product.risk_level,
                                                          "risk_tolerance": tolerance}}]


_FILTER_TEXT = {
    "inactive": "not on sale now", "not_on_channel": "not offered on this channel",
    "excluded_by_caller": "excluded by the caller", "already_held": "already held",
    "not_eligible": "eligibility condition not met", "not_target_tier": "not offered to the customer's tiers",
    "not_suitable": "product risk above the customer's risk tolerance",
    "no_marketing_consent": "no marketing consent", "contact_policy": "suppressed by the contact policy",
}


def _filtered(product: Product, stat, row) -> dict[str, Any]:
    detail = _FILTER_TEXT[stat["filtered_by"]]
    if stat["filtered_by"] == "not_suitable":
        detail += f" (R{product.risk_level} > {row['risk_tolerance'] or 'no valid assessment: R1 only'})"
    elif stat["filtered_by"] == "contact_policy":
        detail += f" (rule {stat['contact_rule']})"
    return {"product_code": product.code, "filter": stat["filtered_by"], "detail": detail}


# The served list and its items in one statement.
_RECORD = text("""
WITH served AS (
    INSERT INTO recommendation_list (customer_id, channel, strategy, tier_code)
    VALUES (:customer_id, :channel, :strategy, :tier) RETURNING id
)
INSERT INTO recommendation_item (recommendation_id, list_id, customer_id, product_code, tier_code, rank, score,
                                 propensity, strategy, reasons)
SELECT i.recommendation_id, served.id, :customer_id, i.product_code, :tier, i.rank, i.score, i.propensity,
       :strategy, i.reasons
FROM served, unnest(CAST(:ids AS uuid[]), CAST(:codes AS text[]), CAST(:ranks AS smallint[]),
                    CAST(:scores AS numeric[]), CAST(:propensities AS numeric[]), CAST(:reasons AS jsonb[]))
     AS i(recommendation_id, product_code, rank, score, propensity, reasons)
RETURNING list_id
""")


async def _record(session: AsyncSession, result: RecommendationResult, channel: str) -> None:
    """Store what was served, so that feedback is attributed to what the customer actually saw."""
    ids = [uuid.uuid4() for _ in result.items]
    list_id = await session.scalar(_RECORD, {
        "customer_id": result.customer_id, "channel": channel, "strategy": result.strategy, "tier": result.tier,
        "ids": ids, "codes": [item.product.code for item in result.items],
        "ranks": list(range(1, len(ids) + 1)), "scores": [Decimal(f"{item.score:.6f}") for item in result.items],
        "propensities": [Decimal(f"{min(item.propensity, 0.999999):.6f}") for item in result.items],
        "reasons": [json.dumps(item.reasons, default=str) for item in result.items]})
    result.list_id, result.recommendation_ids = list_id, ids
