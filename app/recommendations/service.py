"""Next-best-product: candidates filtered in SQL (eligibility through the one compiler, suitability, holdings,
consent, contact policy), ranked by propensity x value x lever, each with its reasons; served lists are stored.

Propensity = a Beta posterior of the product's acceptance rate within the customer's tier (prior: the product's
popularity in that tier, worth `prior_strength` observations; evidence: recommendation feedback), Thompson-sampled
for exploration, times the customer's co-holding lift (how much likelier customers holding what this customer holds
are to hold it) and a win-back boost for a product held recently. With little feedback the prior dominates.

A request is one prepared statement on a driver connection: the customer's offer state (app/recommendations/
offer_state.py) and the candidates (with explain, every product with the first filter that removes it). When no
state holds, a second statement computes it (the customer's features and every product's eligibility), stores it
and gives the candidates. Then comes the request's share of one insert of served lists (`ServedLists`: concurrent
requests' lists are committed together). The population-wide statistics
that rank (popularity, co-holding, feedback counts: a few hundred rows, refreshed by a job or by feedback) are read
once per `ranking_stats_seconds` per instance, not per request.
"""

import asyncio
import hashlib
import os
import random
import re
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from pydantic_core import from_json, to_json
from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects.postgresql import ARRAY, array
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from app.core.config import Settings
from app.core.db import driver_connection, driver_statement
from app.customers.errors import CustomerNotFound
from app.customers.models import Customer
from app.products.models import Product
from app.recommendations import offer_state
from app.recommendations.models import CustomerOfferState, RecommendationItem
from app.recommendations.stats import refresh_stats
from app.rules import (ExplainedLeaf, compile_condition, compile_explanation, explain_row, features_for_customers,
                       load_catalog, parse_condition)
from app.rules.attributes import RISK_VALID_DAYS, features_stable_until
from app.rules.compile import fact_value, facts_expression, facts_mapping, json_array_expression
from app.rules.schema import AllCondition, AlwaysCondition, Comparison, Condition, referenced_attributes

EPSILON = 0.005
FEATURE_COLUMNS = ("customer_id", "external_id", "held_products", "risk_tolerance", "marketing_consent")
# The catalog's version (app.products.models.CatalogVersion: triggers on products and custom attributes set it),
# read with every customer.
_CATALOG_VERSION = "(SELECT version FROM catalog_version)"


@dataclass(frozen=True, slots=True)
class CatalogProduct:
    """What ranking and the response read of a product, copied from its row when the catalog is compiled (a plain
    object: an ORM instance's attributes cost several times as much to read, and each request reads dozens)."""

    code: str
    name: str
    category: str
    risk_level: int
    value_weight: float
    lever: float
    target_tiers: tuple[str, ...]

    @classmethod
    def of(cls, product: Product) -> "CatalogProduct":
        return cls(code=product.code, name=product.name, category=product.category, risk_level=product.risk_level,
                   value_weight=float(product.value_weight), lever=float(product.lever),
                   target_tiers=tuple(product.target_tiers or ()))


@dataclass(frozen=True)
class CatalogSnapshot:
    """The product catalog compiled for candidate selection: prepared statements that read a customer's offer state
    or compute it (the customer's features, every product's eligibility with the facts behind it) and give the
    candidates (with explain, every product with the first filter that removes it) and the catalog's version, so
    that a changed catalog is noticed without a round trip of its own."""

    products: dict[str, CatalogProduct]
    leaves: dict[str, list[ExplainedLeaf]]
    explained_attributes: tuple[str, ...]
    """The attributes conjunctions read: their values open the offer state's explanation, in this order."""
    with_facts: tuple[str, ...]
    """Products whose condition has `any` or `not`: their facts (each comparison's value and result) follow, in
    this order."""
    sql: str
    """The statement that computes the customer's offer state and stores it, then the candidates; as asyncpg takes
    it, with $n placeholders."""
    state_sql: str
    """The statement that reads the customer's offer state when one holds (else no row), then the candidates."""
    refresh_sql: str
    """The statement that computes and stores the offer states of many customers, their ids at `refresh_ids_at`
    of `refresh_args`."""
    refresh_args: tuple[Any, ...]
    refresh_ids_at: int
    customer_args: tuple[Any, ...]
    """The customer part's bound values (the eligibility conditions' thresholds), the customer's external id at
    `external_id_at`; the candidate part's values follow them (`query`)."""
    external_id_at: int
    version: int

    def query(self, external_id: str, *, primary_policy: str, channel: str, exclude: list[str], now: datetime,
              winback_days: int, explain: bool) -> list[Any]:
        args = list(self.customer_args)
        args[self.external_id_at] = external_id
        return [self.sql, *args, primary_policy, channel, exclude, now, winback_days, explain]

    def state_query(self, external_id: str, *, primary_policy: str, channel: str, exclude: list[str],
                    now: datetime, winback_days: int, explain: bool) -> list[Any]:
        return [self.state_sql, external_id, primary_policy, channel, exclude, now, winback_days, explain]

    def explanation(self, document: str) -> "Explanation":
        """The offer state's explanation, from its JSON array (`explained_attributes`' values, then the facts of
        each product in `with_facts`)."""
        values = from_json(document)
        n = len(self.explained_attributes)
        return Explanation(values=dict(zip(self.explained_attributes, values[:n])),
                           facts=dict(zip(self.with_facts, values[n:])))


@dataclass(frozen=True, slots=True)
class Explanation:
    """What explains a customer's eligibility, from its offer state: the values of the attributes conjunctions read
    (as explanations show them: numbers as exact decimal strings), and the facts of every other condition."""

    values: dict[str, Any]
    facts: dict[str, list[Any]]


def _conjunction(condition: Condition) -> bool:
    """Whether the condition holds exactly when every comparison in it holds (comparisons under `all`s)."""
    if isinstance(condition, AllCondition):
        return all(_conjunction(member) for member in condition.all)
    return isinstance(condition, Comparison | AlwaysCondition)


@dataclass(frozen=True)
class _ComputedState:
    """A customer's offer state as SQL over a features relation (compiled once per form of the features)."""

    columns: list[Any]
    """The columns `offer_state.STORE_COMPUTED` stores, and the candidate part reads."""
    leaves: dict[str, list[ExplainedLeaf]]
    explained_attributes: tuple[str, ...]
    with_facts: tuple[str, ...]


def _computed_state(conditions: dict[str, Condition], catalog, features, customer, state,
                    version: int) -> _ComputedState:
    """The customer's offer state computed over `features` (the customer's row in `customer`, its stored state, if
    any, in `state`): the products whose eligibility does not hold, and what explains each eligibility (for a
    conjunction the values of the attributes it reads: each comparison held, if the customer is eligible; for a
    condition with `any` or `not` each comparison's value and result), with what storing the state needs."""
    leaves: dict[str, list[ExplainedLeaf]] = {}
    explained: dict[str, ColumnElement[Any]] = {}  # attribute: its value as explanations show it
    facts: dict[str, ColumnElement[Any]] = {}  # product: its condition's facts
    ineligible: list[Any] = []
    reads = set(offer_state.ALWAYS_READ)
    for i, (code, condition) in enumerate(conditions.items()):
        reads |= referenced_attributes(condition)
        leaves[code] = compile_explanation(condition, catalog, features, pointer="/eligibility", label_prefix=f"p{i}")
        eligible = compile_condition(condition, catalog, features)
        ineligible.append(sa.case((eligible.is_not(sa.true()), sa.literal(code, sa.Text())), else_=sa.null()))
        if _conjunction(condition):  # eligible means every comparison held: only the values are needed
            for leaf in leaves[code]:
                explained.setdefault(leaf.attribute, fact_value(leaf))
        else:
            facts[code] = facts_expression(leaves[code])
    columns = [*(features.c[name] for name in FEATURE_COLUMNS),
               (sa.func.array_remove(array(ineligible), None) if ineligible
                else sa.literal([], ARRAY(sa.Text()))).label("ineligible"),
               json_array_expression([*explained.values(), *facts.values()]).label("explanation"),
               sa.literal_column(_CATALOG_VERSION).label("catalog_version"),
               # what storing the state needs: the generation it read, the catalog it was compiled from, what it
               # reads, until when and under which risk validity it holds
               state.c.generation.label("offer_generation"),
               sa.literal(version, sa.BigInteger()).label("offer_catalog_version"),
               sa.literal(sorted(reads), ARRAY(sa.Text())).label("offer_reads"),
               features_stable_until(customer, features).label("offer_valid_until"),
               RISK_VALID_DAYS.label("offer_risk_valid_days")]
    return _ComputedState(columns, leaves, tuple(explained), tuple(facts))


async def build_snapshot(session: AsyncSession) -> CatalogSnapshot:
    """Compile the catalog into two statements, each then `_CANDIDATES` over the requested customer's offer state
    (app/recommendations/offer_state.py): one that reads the state when one holds, and one that computes it (the
    customer's features: the inlined customer_features_for, joined laterally to the customer found by external id)
    and stores it. Postgres prepares every node of a plan on each execution, the branches it does not run
    included; so reading a state is a statement without the computation. A third statement computes and stores
    the states of many customers at once (`refresh_offer_states`)."""
    version = await session.scalar(text(f"SELECT {_CATALOG_VERSION}"))
    products = {p.code: p for p in (await session.scalars(select(Product).order_by(Product.code))).all()}
    catalog = await load_catalog(session)
    conditions = {code: parse_condition(p.eligibility, "/eligibility") for code, p in products.items()
                  if p.eligibility}
    dialect = session.get_bind().dialect
    state = CustomerOfferState.__table__.alias("s")

    requested = Customer.__table__.alias("requested")
    # Fenced (OFFSET 0): Postgres computes the customer's features once, in the sub-select, and the conditions read
    # its columns; inlined, every condition that reads `age` or `aum_avg_3m` recomputed that column's expression.
    features = (select(features_for_customers(array([requested.c.id])))
                .offset(sa.literal_column("0")).lateral("customer_features"))
    one = _computed_state(conditions, catalog, features, requested, state, version)
    sql, args, names = driver_statement(
        select(*one.columns).select_from(requested.join(features, sa.true())
                                         .outerjoin(state, state.c.customer_id == requested.c.id))
        .where(requested.c.external_id == bindparam("external_id", type_=sa.String()),
               requested.c.erased_at.is_(None)), dialect)

    # many customers: their ids bound as one array (the function is inlined and planned with them)
    customers = Customer.__table__.alias("requested")
    many_features = features_for_customers(bindparam("ids", type_=ARRAY(sa.BigInteger())))
    many = _computed_state(conditions, catalog, many_features, customers, state, version)
    refresh_sql, refresh_args, refresh_names = driver_statement(
        select(*many.columns).select_from(
            many_features.join(customers, customers.c.id == many_features.c.customer_id)
            .outerjoin(state, state.c.customer_id == many_features.c.customer_id)), dialect)
    return CatalogSnapshot(
        products={code: CatalogProduct.of(p) for code, p in products.items()}, leaves=one.leaves,
        explained_attributes=one.explained_attributes, with_facts=one.with_facts,
        sql=f"""WITH computed AS ({sql}
), stored AS ({offer_state.STORE_COMPUTED}
), requested_customer AS (
    SELECT customer_id, external_id, held_products, risk_tolerance, marketing_consent, ineligible,
           explanation::text AS explanation, catalog_version FROM computed
){_candidates_after(len(args))}""",
        state_sql=f"WITH requested_customer AS ({offer_state.STATE_OF_CUSTOMER}){_candidates_after(1)}",
        refresh_sql=f"WITH computed AS ({refresh_sql}){offer_state.STORE_COMPUTED}",
        refresh_args=tuple(refresh_args), refresh_ids_at=refresh_names.index("ids"),
        customer_args=tuple(args), external_id_at=names.index("external_id"), version=version)


def _candidates_after(parameters: int) -> str:
    """The candidate part, its own parameters ($1..$6) numbered after the customer part's."""
    return re.sub(r"\$(\d+)", lambda m: f"${int(m[1]) + parameters}", _CANDIDATES)


@dataclass(frozen=True)
class RankingStats:
    """The population-wide statistics that rank, read in three small queries."""

    popularity: dict[tuple[str, str], float]
    """(product, tier of the primary policy or '*' for everyone): (holders + 1) / (customers + 2)."""
    co_holding: dict[str, dict[str, float]]
    """product: {held product: share of that product's holders who also hold this one}."""
    feedback: dict[tuple[str, str], tuple[int, int, int, int]]
    """(product, tier or '-' for customers without one): impressions, accepts, conversions, dismissals."""

    @classmethod
    async def load(cls, connection) -> "RankingStats":
        popularity = {(r[0], r[1]): r[2] for r in await connection.fetch(
            "SELECT product_code, tier_code, (holders + 1)::float8 / (customers + 2) FROM product_holding_stat")}
        co_holding: dict[str, dict[str, float]] = defaultdict(dict)
        for product, held, share in await connection.fetch(
                "SELECT product_code, held_code, holding_both::float8 / held_total FROM co_holding_stat"):
            co_holding[product][held] = share
        feedback = {(r[0], r[1]): tuple(r[2:]) for r in await connection.fetch(
            "SELECT product_code, tier_code, sum(impressions)::bigint, sum(accepts)::bigint, sum(converts)::bigint, "
            "sum(dismisses)::bigint FROM propensity_stat GROUP BY product_code, tier_code")}
        return cls(popularity=popularity, co_holding=dict(co_holding), feedback=feedback)


# After the customer's row (the CTE requested_customer: no row when there is no such customer), the candidates (when
# explaining, every product with the first filter that removes it, NULL for a candidate), as arrays ordered by
# product code, and the products held within the win-back window with the last day each was held. $1 primary
# policy, $2 channel, $3 excluded, $4 now, $5 win-back days, $6 explain. Numbered after the customer part's
# parameters when compiled.
_CANDIDATES = """
, tiers AS (  -- one row: the tier of the primary policy ('*': none) and the customer's tiers in every policy
    SELECT coalesce(max(t.tier) FILTER (WHERE t.key = $1), '*') AS primary_tier,
           coalesce(array_agg(t.tier::text), '{}') AS codes
    FROM (SELECT p.key, effective_tier(a) AS tier
          FROM requested_customer rc JOIN tier_assignment a ON a.customer_id = rc.customer_id
          JOIN tier_policy p ON p.id = a.policy_id) t
), outcomes AS (
    SELECT e.product_code, pr.category, e.channel, e.occurred_at,
           CASE WHEN e.kind = 'dismiss' THEN 'dismiss'
                WHEN NOT EXISTS (SELECT 1 FROM feedback_event x WHERE x.recommendation_id = e.recommendation_id
                                 AND x.kind IN ('click', 'accept', 'convert')) THEN 'ignored_impression' END AS outcome
    FROM requested_customer rc JOIN feedback_event e ON e.customer_id = rc.customer_id
    JOIN product pr ON pr.code = e.product_code
    WHERE e.kind IN ('impression', 'dismiss') AND e.occurred_at > $4::timestamptz - interval '400 days'
), fired AS (  -- each active rule whose threshold the outcomes reach, with the product or category it suppresses
    SELECT r.scope, CASE r.scope WHEN 'product' THEN o.product_code ELSE o.category END AS target,
           min(r.name) AS rule
    FROM contact_rule r JOIN outcomes o ON o.outcome = r.outcome AND (r.channel IS NULL OR o.channel = r.channel)
         AND o.occurred_at > $4::timestamptz - make_interval(days => r.window_days)
    WHERE r.is_active
    GROUP BY r.id, r.scope, r.threshold, r.suppress_days, 2
    HAVING count(*) >= r.threshold
       AND max(o.occurred_at) > $4::timestamptz - make_interval(days => r.suppress_days)
), suppressed AS (  -- one row: 'product:<code>' or 'category:<name>', and the first rule (by name) for each
    SELECT array_agg(f.scope || ':' || f.target) AS keys, array_agg(f.rule) AS rules
    FROM (SELECT scope, target, min(rule) AS rule FROM fired GROUP BY scope, target) f
), previously AS (  -- products held within the win-back window, with the last day each was held
    SELECT array_agg(h.product_code) AS codes, array_agg(h.last_held) AS last_held FROM (
        SELECT b.product_code, max(b.as_of) AS last_held
        FROM requested_customer rc JOIN holding_balance b ON b.customer_id = rc.customer_id
        WHERE b.as_of > $4::timestamptz::date - $5::integer
        GROUP BY b.product_code) h
), products AS (
    SELECT p.code,
           CASE
             WHEN NOT p.is_active OR p.active_from > $4::timestamptz OR p.active_to <= $4::timestamptz THEN 'inactive'
             WHEN NOT ($2::text = ANY(p.channels)) THEN 'not_on_channel'
             WHEN p.code = ANY($3::text[]) THEN 'excluded_by_caller'
             WHEN p.code = ANY(rc.held_products) THEN 'already_held'
             WHEN p.code = ANY(rc.ineligible) THEN 'not_eligible'
             WHEN cardinality(p.target_tiers) > 0 AND NOT (p.target_tiers && t.codes) THEN 'not_target_tier'
             WHEN p.risk_level > coalesce(rc.risk_tolerance, 1) THEN 'not_suitable'
             WHEN NOT coalesce(rc.marketing_consent, false) AND NOT p.is_service THEN 'no_marketing_consent'
             WHEN NOT p.is_service AND contact.rule IS NOT NULL THEN 'contact_policy'
           END AS filtered_by,
           CASE WHEN $6::boolean THEN contact.rule END AS contact_rule
    FROM requested_customer rc CROSS JOIN tiers t CROSS JOIN product p
    CROSS JOIN LATERAL (SELECT least(s.rules[array_position(s.keys, 'product:' || p.code)],
                                     s.rules[array_position(s.keys, 'category:' || p.category)]) AS rule
                        FROM suppressed s) contact
    WHERE $6::boolean OR p.is_active
)
SELECT rc.*, t.primary_tier,
       c.codes, c.filtered_by, c.contact_rules, pv.codes AS held_before, pv.last_held AS held_until
FROM requested_customer rc CROSS JOIN tiers t CROSS JOIN previously pv
CROSS JOIN LATERAL (  -- one Agg reads the rows: its arrays are aligned
    SELECT array_agg(code) FILTER (WHERE $6::boolean OR filtered_by IS NULL) AS codes,
           array_agg(filtered_by) FILTER (WHERE $6::boolean) AS filtered_by,
           array_agg(contact_rule) FILTER (WHERE $6::boolean) AS contact_rules
    FROM (SELECT * FROM products ORDER BY code) ordered
) c
"""


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


def in_holdout(external_id: str, share: float) -> bool:
    """A stable share of customers gets the unpersonalised baseline, so that uplift can be measured."""
    bucket = int.from_bytes(hashlib.sha256(f"holdout:{external_id}".encode()).digest()[:4], "big") / 2**32
    return bucket < share


def _money(value: Any) -> str:
    return f"{Decimal(str(value)):,.0f}"


class Recommender:
    """One instance's recommender: the compiled catalog and the ranking statistics, each kept until it changes
    (the catalog's version is read with every customer) or ages (`ranking_stats_seconds`; feedback taken by this
    instance and a statistics refresh drop them at once).

    sessionmaker: a zero-argument callable returning an async context manager of a session, used to compile the
    catalog when it has changed."""

    def __init__(self, settings: Settings,
                 sessionmaker: Callable[[], AbstractAsyncContextManager[AsyncSession]]) -> None:
        self.settings = settings
        self._sessionmaker = sessionmaker
        self._snapshot: CatalogSnapshot | None = None
        self._stats: RankingStats | None = None
        self._stats_expire_at = 0.0
        self.served = ServedLists()

    def invalidate_stats(self) -> None:
        self._stats = None

    async def refresh_statistics(self) -> dict[str, int]:
        """Recompute popularity and co-holding (app.recommendations.stats), and read them from now on."""
        async with self._sessionmaker() as session:
            counts = await refresh_stats(session, self.settings.primary_policy)
            await session.commit()
        self.invalidate_stats()
        return counts

    async def refresh_offer_states(self, *, everyone: bool = False, chunk: int = 5000) -> dict[str, int]:
        """Compute again, set-based, the offer states that no longer hold of customers who ask for recommendations
        (after midnight, after writes), or with `everyone` of every customer; `chunk` customers per statement and
        transaction. Writes meanwhile are safe: a state is stored only at the generation it read."""
        snapshot = await self._catalog()
        stored, after = 0, 0
        while True:
            async with self._sessionmaker() as session:
                ids = await offer_state.not_holding(session, after=after, limit=chunk, everyone=everyone)
                if not ids:
                    return {"offer_states_stored": stored}
                args = list(snapshot.refresh_args)
                args[snapshot.refresh_ids_at] = ids
                status = await (await driver_connection(session)).execute(snapshot.refresh_sql, *args)
                await session.commit()
            stored += int(status.rsplit(" ", 1)[1])
            after = ids[-1]

    async def _catalog(self) -> CatalogSnapshot:
        async with self._sessionmaker() as session:
            self._snapshot = await build_snapshot(session)
        return self._snapshot

    async def _customer_row(self, connection, snapshot: CatalogSnapshot, statement, external_id: str,
                            arguments: dict[str, Any]):
        """(snapshot, row) of one of the snapshot's statements (`statement`: CatalogSnapshot.state_query or
        .query); when the row shows that the catalog changed, the catalog is compiled again and the statement rerun."""
        row = await connection.fetchrow(*statement(snapshot, external_id, **arguments))
        if row is not None and row["catalog_version"] != snapshot.version:
            snapshot = await self._catalog()
            row = await connection.fetchrow(*statement(snapshot, external_id, **arguments))
        return snapshot, row

    async def _ranking_stats(self, connection) -> RankingStats:
        stats = self._stats
        if stats is None or time.monotonic() >= self._stats_expire_at:
            stats = await RankingStats.load(connection)
            self._stats, self._stats_expire_at = stats, time.monotonic() + self.settings.ranking_stats_seconds
        return stats

    async def recommend(self, connection, external_id: str, *, channel: str, limit: int, exclude: list[str] = (),
                        explain: bool = False, seed: int | None = None, explore: bool = True,
                        now: datetime | None = None, record: bool = True,
                        strategy: str | None = None) -> "RecommendationResult":
        """Rank the products a customer may be offered now on `channel`, on `connection` (an asyncpg connection:
        the request's transaction, or a pool connection of its own); store the served list when `record`."""
        settings = self.settings
        snapshot = self._snapshot or await self._catalog()
        now = now or datetime.now().astimezone()
        arguments = dict(primary_policy=settings.primary_policy, channel=channel, exclude=list(exclude), now=now,
                         winback_days=settings.winback_days, explain=explain)
        snapshot, row = await self._customer_row(connection, snapshot, CatalogSnapshot.state_query, external_id,
                                                 arguments)
        if row is not None:
            offer_state.READ.inc()
        else:  # no state holds (or there is no such customer): compute it and store it, for the next request too
            snapshot, row = await self._customer_row(connection, snapshot, CatalogSnapshot.query, external_id,
                                                     arguments)
            if row is None:
                raise CustomerNotFound(external_id)
            offer_state.COMPUTED.inc()
        explanation = snapshot.explanation(row["explanation"])
        stats = await self._ranking_stats(connection)

        strategy = strategy or ("holdout_popularity" if in_holdout(row["external_id"], settings.holdout_share)
                                else "personalised")
        rng = random.Random(seed) if seed is not None else _RANDOM
        tier = None if row["primary_tier"] == "*" else row["primary_tier"]
        held = row["held_products"] or []
        last_held_of = dict(zip(row["held_before"] or (), row["held_until"] or ()))
        ranked, filtered = [], []
        codes = row["codes"] or ()
        unexplained = (None,) * len(codes)  # not explaining: only the candidates come back
        for code, filtered_by, contact_rule in zip(codes, row["filtered_by"] or unexplained,
                                                   row["contact_rules"] or unexplained):
            product = snapshot.products.get(code)
            if product is None:  # created since the snapshot: the next snapshot will have it
                continue
            if filtered_by is not None:
                if explain:
                    filtered.append(_filtered(product, filtered_by, contact_rule, row))
                continue
            ranked.append(_score(product, last_held_of.get(code), stats, settings, strategy, rng, explore, held, tier))
        ranked.sort(key=lambda r: (-r.score, r.product.code))
        for item in ranked[:limit]:
            item.reasons = _reasons(item, row, explanation, snapshot, strategy, tier)
        result = RecommendationResult(customer_id=row["customer_id"], external_id=row["external_id"], tier=tier,
                                      strategy=strategy, items=ranked[:limit], filtered=filtered)
        if record and result.items:
            await self.served.write(connection, result, channel)
        return result


_RANDOM = random.Random()  # exploration without a seed: one generator per process, seeded from the OS once


def _score(product: CatalogProduct, last_held: date | None, stats: RankingStats, settings: Settings, strategy: str,
           rng: random.Random, explore: bool, held: list[str], tier: str | None) -> Ranked:
    code = product.code
    tier_popularity = (stats.popularity.get((code, tier or "*")) or stats.popularity.get((code, "*"))
                       or EPSILON)
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
    return Ranked(product, propensity * value * lever, propensity, value, lever, {
        "co_holding": personal if held and co_holding_sum else None, "offered": impressions or dismisses,
        "impressions": impressions, "successes": successes, "posterior_mean": alpha / (alpha + beta),
        "last_held": last_held})


def _reasons(item: Ranked, row, explanation: Explanation, snapshot: CatalogSnapshot, strategy: str,
             tier: str | None) -> list[dict[str, Any]]:
    """The reasons for a shown item, in words, each with the fact behind it (`explanation`: the offer state's)."""
    product, evidence = item.product, item.evidence
    if strategy == "holdout_popularity":
        popularity = evidence["tier_popularity"]
        return [{"code": "POPULAR_IN_TIER", "text": f"held by {popularity:.0%} of {tier or 'all'} customers",
                 "value": popularity}, *_suitability(product, row)]
    reasons: list[dict[str, Any]] = []
    if evidence["co_holding"] is not None:
        reasons.append({"code": "CO_HOLDING", "text": f"held by {evidence['co_holding']:.0%} of customers with "
                                                      f"your products", "value": round(evidence["co_holding"], 4)})
    if evidence["offered"]:
        reasons.append({"code": "LEARNED_PROPENSITY",
                        "text": f"accepted {evidence['successes']} of {evidence['impressions']} times offered to "
                                f"{tier or 'all'} customers", "value": round(evidence["posterior_mean"], 4)})
    if evidence["last_held"] is not None:
        reasons.append({"code": "WIN_BACK", "text": f"held until {evidence['last_held'].isoformat()}",
                        "value": evidence["last_held"].isoformat()})
    for leaf in _eligibility_facts(product, explanation, snapshot):
        reasons.append({"code": "ELIGIBLE", "text": f"{leaf['attribute']} {_fmt(leaf['value'])} "
                                                    f"{_OPS.get(leaf['operator'], leaf['operator'])} "
                                                    f"{_fmt(leaf['threshold'])}", "value": leaf})
    if product.target_tiers:
        reasons.append({"code": "TIER_TARGET", "text": f"offered to {', '.join(product.target_tiers)} customers",
                        "value": list(product.target_tiers)})
    return reasons + _suitability(product, row)


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


def _eligibility_facts(product: CatalogProduct, explanation: Explanation,
                       snapshot: CatalogSnapshot) -> list[dict[str, Any]]:
    leaves = snapshot.leaves.get(product.code)
    if not leaves:
        return []
    if product.code in explanation.facts:  # the facts of a condition with `any` or `not`
        facts = facts_mapping(leaves, explanation.facts[product.code])
    else:  # a conjunction the customer is eligible for: each comparison held
        values = explanation.values
        facts = {key: value for leaf in leaves for key, value in (
            (leaf.value_key, values[leaf.attribute]), (leaf.result_key, True))}
    return [leaf for leaf in explain_row(leaves, facts) if leaf["result"]]


def _suitability(product: CatalogProduct, row) -> list[dict[str, Any]]:
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


def _filtered(product: CatalogProduct, filtered_by: str, contact_rule: str | None, row) -> dict[str, Any]:
    detail = _FILTER_TEXT[filtered_by]
    if filtered_by == "not_suitable":
        detail += f" (R{product.risk_level} > {row['risk_tolerance'] or 'no valid assessment: R1 only'})"
    elif filtered_by == "contact_policy":
        detail += f" (rule {contact_rule})"
    return {"product_code": product.code, "filter": filtered_by, "detail": detail}


# Served lists and their items in one statement: a list per element of $1..$4, its items in $5..$11 (n: the
# list's position in $1..$4). One statement, so it is atomic also on a connection without a transaction.
_RECORD = """
WITH lists AS (
    SELECT nextval(pg_get_serial_sequence('recommendation_list', 'id')) AS id, l.*
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
         WITH ORDINALITY AS l(customer_id, channel, strategy, tier_code, n)
), served AS (
    INSERT INTO recommendation_list (id, customer_id, channel, strategy, tier_code)
    SELECT id, customer_id, channel, strategy, tier_code FROM lists
)
INSERT INTO recommendation_item (recommendation_id, list_id, customer_id, product_code, tier_code, rank, score,
                                 propensity, strategy, reasons)
SELECT i.recommendation_id, lists.id, lists.customer_id, i.product_code, lists.tier_code, i.rank, i.score,
       i.propensity, lists.strategy, i.reasons
FROM unnest($5::bigint[], $6::uuid[], $7::text[], $8::smallint[], $9::numeric[], $10::numeric[], $11::jsonb[])
     AS i(n, recommendation_id, product_code, rank, score, propensity, reasons)
JOIN lists ON lists.n = i.n
"""


async def erase_served_reasons(session: AsyncSession, customer_id: int) -> None:
    """Erasure: the reasons of the lists served to a customer quote their values (balances, age, risk tolerance);
    the items stay, so that feedback and its counts do not change."""
    await session.execute(update(RecommendationItem).where(RecommendationItem.customer_id == customer_id)
                          .values(reasons=[]))


def time_ordered_uuid() -> uuid.UUID:
    """A UUID version 7 (RFC 9562): the Unix time in milliseconds, then 74 random bits. Served items' ids are
    allocated in time order, so their primary key grows at its right edge instead of touching a random page of an
    index that grows with every list served."""
    random_bits = int.from_bytes(os.urandom(10), "big") >> 6  # 74 bits: 12 before the variant, 62 after it
    return uuid.UUID(int=(time.time_ns() // 1_000_000) << 80 | 0x7 << 76 | (random_bits >> 62) << 64
                     | 0b10 << 62 | random_bits & (1 << 62) - 1)


async def insert_served(connection, lists: list[tuple[RecommendationResult, str]]) -> None:
    """Store served lists (result, channel) in one statement; each item gets its recommendation_id here."""
    columns: list[list[Any]] = [[] for _ in range(11)]
    for n, (result, channel) in enumerate(lists, 1):
        for column, value in zip(columns, (result.customer_id, channel, result.strategy, result.tier)):
            column.append(value)
        result.recommendation_ids = [time_ordered_uuid() for _ in result.items]
        for rank, (rid, item) in enumerate(zip(result.recommendation_ids, result.items), 1):
            for column, value in zip(columns[4:], (
                    n, rid, item.product.code, rank, Decimal(f"{item.score:.6f}"),
                    Decimal(f"{min(item.propensity, 0.999999):.6f}"), to_json(item.reasons).decode())):
                column.append(value)
    await connection.execute(_RECORD, *columns)


class ServedLists:
    """Stores what was served, so that feedback is attributed to what the customer actually saw; a request is
    answered only once its list is committed.

    On a connection inside a transaction (a FastAPI route's session) the list is written in that transaction.
    On a connection without one (the hot path's pool) writes are grouped: a request that finds no write under
    way writes every list waiting at that moment, its own included, in one statement on its own connection; the
    others wait for the write that holds theirs, then answer. Under load one statement commits many lists.
    If a grouped write fails, its lists are written one by one, so one bad list fails only its own request."""

    def __init__(self) -> None:
        self._waiting: list[tuple[tuple[RecommendationResult, str], asyncio.Future]] = []
        self._writing: asyncio.Future | None = None
        self.statements = 0

    async def write(self, connection, result: RecommendationResult, channel: str) -> None:
        if connection.is_in_transaction():
            self.statements += 1
            await insert_served(connection, [(result, channel)])
            return
        done = asyncio.get_running_loop().create_future()
        self._waiting.append(((result, channel), done))
        while not done.done():
            if self._writing is None:
                await self._lead(connection)
            else:
                await asyncio.shield(self._writing)
        done.result()  # this list's own error, if its write failed

    async def _lead(self, connection) -> None:
        batch, self._waiting = self._waiting, []
        self._writing = asyncio.get_running_loop().create_future()
        try:
            await self._write(connection, batch)
        except BaseException:  # cancelled mid-write: whether these lists were committed is unknown
            for _, done in batch:
                if not done.done():
                    done.set_exception(RuntimeError("the write of the served list was interrupted"))
            raise
        finally:
            writing, self._writing = self._writing, None
            writing.set_result(None)

    async def _write(self, connection, batch) -> None:
        try:
            self.statements += 1
            await insert_served(connection, [entry for entry, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
                return
            for entry, done in batch:
                try:
                    self.statements += 1
                    await insert_served(connection, [entry])
                except Exception as one:
                    done.set_exception(one)
                else:
                    done.set_result(None)
        else:
            for _, done in batch:
                done.set_result(None)


def recommendations_json(result: RecommendationResult, explain: bool) -> bytes:
    """The RecommendationsRead document of a served list (tests hold it to the model, field by field)."""
    document = {
        "customer_id": result.external_id, "tier": result.tier, "strategy": result.strategy,
        "items": [{"recommendation_id": rid, "rank": rank,
                   "product": {"code": item.product.code, "name": item.product.name,
                               "category": item.product.category, "risk_level": item.product.risk_level},
                   "score": round(item.score, 6),
                   "score_parts": {"propensity": round(item.propensity, 6), "value": item.value,
                                   "lever": item.lever},
                   "reasons": item.reasons}
                  for rank, (rid, item) in enumerate(zip(result.recommendation_ids, result.items, strict=True), 1)]}
    if explain:
        document["filtered_out"] = result.filtered
    return to_json(document)
