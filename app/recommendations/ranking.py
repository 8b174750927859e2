"""Ranking: candidates scored by propensity x value x lever, each shown item with its reasons in words.

Propensity = a Beta posterior of the product's acceptance rate within the customer's tier (prior: the product's
popularity in that tier, worth `prior_strength` observations; evidence: recommendation feedback), Thompson-sampled
for exploration, times the customer's co-holding lift (how much likelier customers holding what this customer holds
are to hold it) and a win-back boost for a product held recently. With little feedback the prior dominates.

With a learned ranker model serving (app/recommendations/learned/), the propensity of each product the model knows
is instead the model's calibrated P(adds it next month), computed in bulk and stored with the offer state by the
serving version (app/recommendations/learned/serving.py; read here, no model runs per request). It is calibrated by
Platt scaling on a held-out month (app/recommendations/learned/model.py), and explored by Thompson sampling from
Beta(p x n, (1 - p) x n), n the held-out customers with adds the calibration was fitted on
(ranking_stats.ServingRanker). A product the model does not know (new: cold start), a state not yet scored, or
scores of a version no longer serving fall back to the rule-based propensity above; beside products the model knows,
a cold-start product's rule-based propensity is put on the model's scale (`_cold_start_on_the_model_scale`).
"""

import asyncio
import hashlib
import random
import uuid
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from functools import lru_cache
from typing import Any

from app.core.config import Settings
from app.recommendations.catalog import CatalogProduct, CatalogSnapshot, Explanation
from app.recommendations.ranking_stats import RankingStats
from app.recommendations.reason_texts import reason_text
from app.rules import explain_row
from app.rules.facts import facts_mapping

EPSILON = 0.005


@dataclass
class Ranked:
    product: CatalogProduct
    score: float
    propensity: float
    value: float
    lever: float
    evidence: dict[str, Any]
    """What the score was made of, for the reasons (written only for the items shown)."""
    reasons: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class RecommendationResult:
    customer_id: int
    external_id: str
    tier: str | None
    strategy: str
    items: list[Ranked]
    filtered: list[dict[str, Any]]
    recommendation_ids: list[uuid.UUID] = field(default_factory=list)
    fallback: dict[str, Any] | None = None
    """The service message served instead of an empty list (app/recommendations/fallback.py), when it is on."""
    stored: asyncio.Future | None = None
    """On the hot path: done once the served list is committed (app/recommendations/served.py: `submit`)."""


def in_holdout(external_id: str, share: float) -> bool:
    """A stable share of customers gets the unpersonalised baseline, so that uplift can be measured."""
    bucket = int.from_bytes(hashlib.sha256(f"holdout:{external_id}".encode()).digest()[:4], "big") / 2**32
    return bucket < share


def _money(value: Any) -> str:
    return f"{Decimal(str(value)):,.0f}"


def rank(
    row,
    snapshot: CatalogSnapshot,
    explanation: Explanation,
    stats: RankingStats,
    settings: Settings,
    *,
    strategy: str,
    seed: int | None,
    explore: bool,
    limit: int,
    explain: bool,
    language: str | None = None,
) -> RecommendationResult:
    """The customer's candidates (`row`: a row of one of the snapshot's statements) ranked by propensity x value x
    lever under `strategy`, the first `limit` with their reasons (`explanation`: the offer state's); with
    `explain`, every product filtered out and the filter that removed it; the reasons' words in `language` (default:
    the configured one)."""
    rng = random.Random(seed) if seed is not None else _RANDOM
    tier = None if row["primary_tier"] == "*" else row["primary_tier"]
    held = row["held_products"] or []
    last_held_of = dict(zip(row["held_before"] or (), row["held_until"] or (), strict=True))
    ranked, filtered = [], []
    codes = row["codes"] or ()
    learned = _learned(row, stats)
    unexplained = (None,) * len(codes)  # not explaining: only the candidates come back
    for code, filtered_by, contact_rule in zip(
        codes, row["filtered_by"] or unexplained, row["contact_rules"] or unexplained, strict=True
    ):
        product = snapshot.products.get(code)
        if product is None:  # created since the snapshot: the next snapshot will have it
            continue
        if filtered_by is not None:
            if explain:
                filtered.append(_filtered(product, filtered_by, contact_rule, row))
            continue
        if code in learned and strategy != "holdout_popularity":
            ranked.append(_learned_score(product, *learned[code], stats.ranker.strength, rng, explore))
            continue
        ranked.append(_score(product, last_held_of.get(code), stats, settings, strategy, rng, explore, held, tier))
    if learned and strategy != "holdout_popularity":
        _cold_start_on_the_model_scale(
            ranked,
            lambda item: (
                _score(
                    item.product, last_held_of.get(item.product.code), stats, settings, strategy, rng, False, held, tier
                ).propensity
            ),
        )
    ranked.sort(key=lambda r: (-r.score, r.product.code))
    languages = (language or settings.default_language, settings.default_language)
    for item in ranked[:limit]:
        item.reasons = _reasons(item, row, explanation, snapshot, strategy, tier, languages)
    return RecommendationResult(
        customer_id=row["customer_id"],
        external_id=row["external_id"],
        tier=tier,
        strategy=strategy,
        items=ranked[:limit],
        filtered=filtered,
    )


_RANDOM = random.Random()  # exploration without a seed: one generator per process, seeded from the OS once


def _learned(row, stats: RankingStats) -> dict[str, tuple[float, str]]:
    """{product: (calibrated propensity, reason code)} the serving model stored with the offer state; empty when no
    model serves or the state holds another version's scores (or none)."""
    ranker = stats.ranker
    if ranker is None or row["ranker_version"] != ranker.version or not row["ranker_products"]:
        return {}
    return {
        code: (p, why)
        for code, p, why in zip(row["ranker_products"], row["ranker_propensities"], row["ranker_reasons"], strict=True)
    }


def _learned_score(
    product: CatalogProduct, p: float, why: str, strength: float, rng: random.Random, explore: bool
) -> Ranked:
    if explore:  # Beta(p n, (1 - p) n): mean p (kept off 0 and 1, where the Beta has no density)
        mean = min(max(p, 1e-6), 1 - 1e-6)
        propensity = rng.betavariate(mean * strength, (1 - mean) * strength)
    else:
        propensity = p
    value, lever = product.value_weight, product.lever
    return Ranked(
        product, propensity * value * lever, propensity, value, lever, {"model": p, "model_reason": why or None}
    )


def _cold_start_on_the_model_scale(ranked: list[Ranked], rule_propensity) -> None:
    """Put the products the model does not know (cold start: ranked by the rules) on the learned propensities'
    scale. The rules' propensity is a chance of holding the product (its popularity in the tier times the
    co-holding lift), the model's a calibrated chance of adding it next month, often a hundred times smaller: side
    by side, an unknown product would top every list. Each rule-based propensity is multiplied by the customer's
    own ratio of the two over the candidates the model knows (the sum of the model's over the sum of the rules'
    mean propensities for the same products). Nothing changes when every candidate is known or none is."""
    known = [item for item in ranked if "model" in item.evidence]
    cold = [item for item in ranked if "model" not in item.evidence]
    if not known or not cold:
        return
    rules = sum(rule_propensity(item) for item in known)
    if rules <= 0:
        return
    scale = sum(item.evidence["model"] for item in known) / rules
    for item in cold:
        item.propensity *= scale
        item.score *= scale
        item.evidence["model_scale"] = scale


def _score(
    product: CatalogProduct,
    last_held: date | None,
    stats: RankingStats,
    settings: Settings,
    strategy: str,
    rng: random.Random,
    explore: bool,
    held: list[str],
    tier: str | None,
) -> Ranked:
    code = product.code
    tier_popularity = stats.popularity.get((code, tier or "*")) or stats.popularity.get((code, "*")) or EPSILON
    if strategy == "holdout_popularity":
        return Ranked(product, tier_popularity, tier_popularity, 1.0, 1.0, {"tier_popularity": tier_popularity})
    # the Beta posterior of the acceptance rate in the tier, its prior centred on the tier's popularity
    impressions, accepts, converts, dismisses = stats.feedback.get((code, tier or "-"), (0, 0, 0, 0))
    successes = max(accepts, converts)
    failures = max(impressions - successes, dismisses, 0)
    alpha = settings.prior_strength * tier_popularity + successes
    beta = settings.prior_strength * (1 - tier_popularity) + failures
    rate = rng.betavariate(alpha, beta) if explore else alpha / (alpha + beta)
    co_holding = stats.co_holding.get(code, {})
    co_holding_sum = sum(co_holding.get(h, 0.0) for h in held)
    personal = co_holding_sum / len(held) if held else tier_popularity
    lift = min(max((personal + EPSILON) / (tier_popularity + EPSILON), 0.1), 10.0)
    winback = settings.winback_boost if last_held is not None else 1.0
    propensity = min(rate * lift * winback, 1.0)
    value, lever = product.value_weight, product.lever
    return Ranked(
        product,
        propensity * value * lever,
        propensity,
        value,
        lever,
        {
            "co_holding": personal if held and co_holding_sum else None,
            "offered": impressions or dismisses,
            "impressions": impressions,
            "successes": successes,
            "posterior_mean": alpha / (alpha + beta),
            "last_held": last_held,
        },
    )


def _reasons(
    item: Ranked,
    row,
    explanation: Explanation,
    snapshot: CatalogSnapshot,
    strategy: str,
    tier: str | None,
    language: tuple[str, str],
) -> list[dict[str, Any]]:
    """The reasons for a shown item, in words (`language`: the customer's, and the default), each with the fact
    behind it (`explanation`: the offer state's)."""
    product, evidence = item.product, item.evidence
    tier_name = tier or _worded("ALL_TIERS", *language)
    if strategy == "holdout_popularity":
        popularity = evidence["tier_popularity"]
        return [
            {
                "code": "POPULAR_IN_TIER",
                "text": reason_text("POPULAR_IN_TIER", *language, share=popularity, tier=tier_name),
                "value": popularity,
            },
            *_suitability(product, row, language),
        ]
    reasons: list[dict[str, Any]] = []
    if evidence.get("model_reason"):
        reasons.append(_model_reason(item, snapshot, language))
    if evidence.get("co_holding") is not None:
        reasons.append(
            {
                "code": "CO_HOLDING",
                "text": reason_text("CO_HOLDING", *language, share=evidence["co_holding"]),
                "value": round(evidence["co_holding"], 4),
            }
        )
    if evidence.get("offered"):
        reasons.append(
            {
                "code": "LEARNED_PROPENSITY",
                "text": reason_text(
                    "LEARNED_PROPENSITY",
                    *language,
                    successes=evidence["successes"],
                    impressions=evidence["impressions"],
                    tier=tier_name,
                ),
                "value": round(evidence["posterior_mean"], 4),
            }
        )
    if evidence.get("last_held") is not None:
        reasons.append(
            {
                "code": "WIN_BACK",
                "text": reason_text("WIN_BACK", *language, date=evidence["last_held"].isoformat()),
                "value": evidence["last_held"],
            }
        )
    for leaf in _eligibility_facts(product, explanation, snapshot):
        reasons.append(
            {
                "code": "ELIGIBLE",
                "text": reason_text(
                    "ELIGIBLE",
                    *language,
                    attribute=leaf["attribute"],
                    value=_fmt(leaf["value"]),
                    operator=_OPS.get(leaf["operator"], leaf["operator"]),
                    threshold=_fmt(leaf["threshold"]),
                ),
                "value": leaf,
            }
        )
    if product.target_tiers:
        reasons.append(
            {
                "code": "TIER_TARGET",
                "text": _worded("TIER_TARGET", *language, tiers=", ".join(product.target_tiers)),
                "value": list(product.target_tiers),
            }
        )
    return reasons + _suitability(product, row, language)


def _model_reason(item: Ranked, snapshot: CatalogSnapshot, language: tuple[str, str]) -> dict[str, Any]:
    """The top feature of the learned model's decision (its reason code, app/recommendations/learned/serving.py),
    in words."""
    factor, _, related = item.evidence["model_reason"].partition(":")
    related_product = snapshot.products.get(related) if related else None
    words = _worded(
        factor,
        *language,
        product=item.product.name,
        related=related_product.name if related_product else related,
    )
    return {
        "code": "MODEL_PROPENSITY",
        "text": _worded("MODEL_PROPENSITY", *language, reason=words),
        "value": {
            "factor": factor,
            "related_product_code": related or None,
            "propensity": round(item.evidence["model"], 6),
        },
    }


@lru_cache(maxsize=4096)
def _worded(code: str, language: str, default: str, **facts: Any) -> str:
    """`reason_text` of a reason whose facts have few values (a product's risk level, name or tiers, a risk
    tolerance, the model's reason code): worded once per process, not once per item served. The texts are read
    once per process too (reason_texts.reason_texts)."""
    return reason_text(code, language, default, **facts)


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


def _eligibility_facts(
    product: CatalogProduct, explanation: Explanation, snapshot: CatalogSnapshot
) -> list[dict[str, Any]]:
    leaves = snapshot.leaves.get(product.code)
    if not leaves:
        return []
    if product.code in explanation.facts:  # the facts of a condition with `any` or `not`
        facts = facts_mapping(leaves, explanation.facts[product.code])
    else:  # a conjunction the customer is eligible for: each comparison held
        values = explanation.values
        facts = {
            key: value
            for leaf in leaves
            for key, value in ((leaf.value_key, values[leaf.attribute]), (leaf.result_key, True))
        }
    return [leaf for leaf in explain_row(leaves, facts) if leaf["result"]]


def _suitability(product: CatalogProduct, row, language: tuple[str, str]) -> list[dict[str, Any]]:
    tolerance = row["risk_tolerance"]
    text_ = (
        _worded("SUITABLE", *language, product_risk=product.risk_level, risk_tolerance=tolerance)
        if tolerance is not None
        else _worded("SUITABLE_UNASSESSED", *language, product_risk=product.risk_level)
    )
    return [
        {"code": "SUITABLE", "text": text_, "value": {"product_risk": product.risk_level, "risk_tolerance": tolerance}}
    ]


_FILTER_TEXT = {
    "inactive": "not on sale now",
    "sold_out": "its quota for the period is sold out",
    "not_on_channel": "not offered on this channel",
    "excluded_by_caller": "excluded by the caller",
    "already_held": "already held",
    "not_eligible": "eligibility condition not met",
    "not_target_tier": "not offered to the customer's tiers",
    "not_suitable": "product risk above the customer's risk tolerance",
    "no_marketing_consent": "no marketing consent",
    "contact_policy": "suppressed by the contact policy",
}


def _filtered(product: CatalogProduct, filtered_by: str, contact_rule: str | None, row) -> dict[str, Any]:
    detail = _FILTER_TEXT[filtered_by]
    if filtered_by == "not_suitable":
        detail += f" (R{product.risk_level} > {row['risk_tolerance'] or 'no valid assessment: R1 only'})"
    elif filtered_by == "contact_policy":
        detail += f" (rule {contact_rule})"
    return {"product_code": product.code, "filter": filtered_by, "detail": detail}
