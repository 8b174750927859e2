"""Tier assignment reads: a customer's tiers (the hot read, explained), the change feed, list filters by tier and
the care calendar."""

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from pydantic_core import from_json, to_json
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql import ColumnElement

from app.core.serializers import document_serializer
from app.customers.errors import CustomerNotFound
from app.customers.models import Customer
from app.tiering.assignment.compile import cached_explainer, explainer
from app.tiering.assignment.lean_json import customers_tiers_lean_json
from app.tiering.assignment.schemas import CustomerTier, CustomerTiers, CustomerTiersBulk, CustomerTiersItem
from app.tiering.models import TierAssignment, TierPolicy, TierTransition, effective_tier

# The hottest read of the service (GET /v1/customers/{id}/tiers, and its bulk form): one query, run on the driver,
# for one customer or up to a thousand ($1, in order), of every policy or of some ($2: keys, or NULL), with the
# stored facts only when they are explained ($3). Index-driven per id asked: the customer by its external id, then
# its assignments by the primary key (customer_id, policy_id). The LATERAL subqueries' OFFSET 0 keeps the planner
# from flattening them into joins, which it would answer for a bulk read by hashing every customer and every
# assignment (6x slower for 1,000 of 20,000 customers; bench/RESULTS.md).
_CUSTOMERS_TIERS = """
SELECT r.external_id, c.id IS NOT NULL AS found, t.version_id, t.version_updated_at, t.key, t.version, t.tier,
       t.rank, t.since, t.evaluated_at, t.qualified_code, t.lower_since, t.override_applies, t.override_code,
       t.override_reason, t.override_actor, t.override_expires_at, t.facts
FROM unnest($1::text[]) WITH ORDINALITY AS r(external_id, n)
LEFT JOIN LATERAL (
    SELECT c.id FROM customer c WHERE c.external_id = r.external_id AND c.erased_at IS NULL OFFSET 0
) c ON true
LEFT JOIN LATERAL (
    SELECT p.key, v.version, a.version_id, v.updated_at AS version_updated_at, effective_tier(a) AS tier,
           effective_rank(a) AS rank, a.since, a.evaluated_at, a.qualified_code, a.lower_since,
           tier_override_applies(a) AS override_applies, a.override_code, a.override_reason, a.override_actor,
           a.override_expires_at,
           CASE WHEN $3 THEN ARRAY(SELECT f::text FROM jsonb_array_elements(a.facts) f) END AS facts
    FROM tier_assignment a
    JOIN tier_policy p ON p.id = a.policy_id AND ($2::text[] IS NULL OR p.key = ANY($2::text[]))
    JOIN tier_policy_version v ON v.id = a.version_id
    WHERE a.customer_id = c.id
    OFFSET 0
) t ON true
ORDER BY r.n, t.key
"""

# The schema's JSON of the documents and of each tier, each written with an empty last list that the parts fill in.
CUSTOMER_TIERS_JSON, CUSTOMER_TIER_JSON = document_serializer(CustomerTiers), document_serializer(CustomerTier)
CUSTOMER_TIERS_ITEM_JSON, CUSTOMER_TIERS_BULK_JSON = (
    document_serializer(CustomerTiersItem),
    document_serializer(CustomerTiersBulk),
)


@dataclass(frozen=True)
class TiersAsked:
    """What a read of tiers is asked for: which policies (None: all), explained or not, in which language (the
    negotiated one, and the configured default the texts fall back to; none: the tiers' own `label`)."""

    policy_keys: list[str] | None = None
    explain: bool = True
    language: str = ""
    default_language: str = ""


async def customer_tiers_json(connection, sessionmaker, external_id: str, asked: TiersAsked = TiersAsked()) -> bytes:
    """The CustomerTiers document of a customer: every tier (of the policies asked) with since-when, grace state,
    override and explanation (the version's explanation template, the stored facts in its holes). One indexed read
    on `connection` (a driver connection); a version not yet compiled in this process is read in a session from
    `sessionmaker` (a zero-argument callable returning an async context manager of a session). 404 when there is
    no such customer."""
    ((_, found, tiers),) = await _customers_tiers(connection, sessionmaker, [external_id], asked)
    if not found:
        raise CustomerNotFound(external_id)
    if not asked.explain:  # every tier a dict: the schema's serializer writes the whole document at once
        return CUSTOMER_TIERS_JSON.to_json({"customer_id": external_id, "tiers": tiers})
    document = CUSTOMER_TIERS_JSON.to_json({"customer_id": external_id, "tiers": []})
    return _filled(document, _explained(tiers))


async def customers_tiers_json(connection, sessionmaker, external_ids: list[str], asked: TiersAsked) -> bytes:
    """The CustomerTiersBulk document of many customers (distinct ids, in order): the same query and the same
    tiers as `customer_tiers_json`, an unknown customer an item with found=false. Not explained, the document is
    written by Postgres (lean_json.py: the same bytes, without a row to decode or a dict to build here)."""
    if not asked.explain:
        return await customers_tiers_lean_json(
            connection, external_ids, asked.policy_keys, asked.language, asked.default_language
        )
    customers = await _customers_tiers(connection, sessionmaker, external_ids, asked)
    items = []
    for external_id, found, tiers in customers:
        item = CUSTOMER_TIERS_ITEM_JSON.to_json({"customer_id": external_id, "found": found, "tiers": []})
        items.append(_filled(item, _explained(tiers)))
    return _filled(CUSTOMER_TIERS_BULK_JSON.to_json({"items": []}), b"[" + b",".join(items) + b"]")


async def _customers_tiers(
    connection, sessionmaker, external_ids: list[str], asked: TiersAsked
) -> list[tuple[str, bool, list[Any]]]:
    """(customer id, found, tiers) per customer, in the order asked: each tier a CustomerTier dict, and with
    `asked.explain` a pair of it and its explanation's JSON."""
    rows = await connection.fetch(_CUSTOMERS_TIERS, external_ids, asked.policy_keys or None, asked.explain)
    customers: list[tuple[str, bool, list[Any]]] = []
    versions: dict[tuple, Any] = {}  # what a version gives its tiers, looked up once per read
    tiers: list[Any] = []
    last_id = None
    explain = asked.explain
    # each row unpacked in the statement's column order (a thousand customers' rows: no lookups by name)
    for external_id, found, version_id, updated_at, *columns in rows:
        if external_id != last_id:
            tiers = []
            customers.append((external_id, found, tiers))
            last_id = external_id
        if version_id is None:
            continue
        key = (version_id, updated_at)
        version = versions.get(key)
        if version is None:
            compiled = cached_explainer(*key)
            if compiled is None:
                async with sessionmaker() as session:
                    compiled = await explainer(session, *key)
            labels = compiled.explanation.labels_in(asked.language, asked.default_language)
            version = versions[key] = (compiled, labels, timedelta(days=compiled.grace_days))
        tier = _tier(columns, version[1], version[2], explain)
        tiers.append((tier, _explanation(columns, version[0])) if explain else tier)
    return customers


def _tier(columns: list[Any], labels: dict[str, str], grace: timedelta, explain: bool) -> dict[str, Any]:
    """A CustomerTier dict of a row's columns after (external_id, found, version_id, version_updated_at)."""
    (key, version, tier, rank, since, evaluated_at, qualified, lower_since, override_applies, *override, _) = columns
    at_risk = lower_since is not None
    return {
        "policy_key": key,
        "policy_version": version,
        "tier": tier,
        "label": labels.get(tier, tier),
        "rank": rank,
        "since": since,
        "evaluated_at": evaluated_at,
        "qualified_tier": qualified,
        "at_risk": at_risk,
        "downgrade_to": qualified if at_risk else None,
        "downgrade_on": (lower_since + grace).date() if at_risk else None,
        "override": dict(zip(_OVERRIDE, override, strict=True)) if override_applies else None,
        "explanation": [] if explain else None,
    }


_OVERRIDE = ("tier", "reason", "actor", "expires_at")


def _explanation(columns: list[Any], compiled) -> bytes:
    facts = [fact if fact[0] != "[" else to_json(from_json(fact)).decode() for fact in columns[-1]]
    return compiled.explanation.render(facts, columns[6]).encode()


def _explained(tiers: list[tuple[dict[str, Any], bytes]]) -> bytes:
    """The JSON list of explained tiers: each tier's document with its explanation's JSON in place."""
    parts = [_filled(CUSTOMER_TIER_JSON.to_json(tier), explanation) for tier, explanation in tiers]
    return b"[" + b",".join(parts) + b"]"


def _filled(document: bytes, last: bytes) -> bytes:
    """A document whose last field is an empty list, with `last` (JSON) in its place. Facts are Postgres' JSON text,
    the same as the schema's but for the space after an array's commas (re-encoded above)."""
    return document[:-3] + last + b"}"


_FEED_VISIBLE = sa.text("(pg_snapshot_xmin(pg_current_snapshot())::text)::bigint")
_OWN_TRANSACTION = sa.text("(pg_current_xact_id_if_assigned()::text)::bigint")


async def transitions_page(
    session: AsyncSession,
    *,
    after: tuple[int, int] | None,
    limit: int,
    customer_id: int | None = None,
    policy_id: int | None = None,
) -> list[Any]:
    """Transitions in feed order (writing transaction, then id). The feed shows only rows of transactions that
    finished before every transaction still running, so nothing can later appear behind a reader's cursor."""
    query = (
        select(TierTransition, TierPolicy.key, Customer.external_id)
        .join(TierPolicy, TierPolicy.id == TierTransition.policy_id)
        .join(Customer, Customer.id == TierTransition.customer_id)
        .order_by(TierTransition.tx_id, TierTransition.id)
        .limit(limit + 1)
    )
    if customer_id is None:
        # (a transaction also sees the rows it wrote itself)
        query = query.where(sa.or_(TierTransition.tx_id < _FEED_VISIBLE, TierTransition.tx_id == _OWN_TRANSACTION))
    else:
        query = query.where(TierTransition.customer_id == customer_id)
    if policy_id is not None:
        query = query.where(TierTransition.policy_id == policy_id)
    if after is not None:
        query = query.where(sa.tuple_(TierTransition.tx_id, TierTransition.id) > sa.tuple_(*after))
    return list((await session.execute(query)).all())


def tier_filter(policy_id: int, tier: str | None, at_risk: bool | None) -> ColumnElement[bool]:
    """Customers (by customer.id) holding a tier under a policy, or at risk of a downgrade: for list filters."""
    query = select(TierAssignment.customer_id).where(TierAssignment.policy_id == policy_id)
    if tier is not None:
        query = query.where(effective_tier() == tier)
    if at_risk is not None:
        query = query.where(
            TierAssignment.lower_since.is_not(None) if at_risk else TierAssignment.lower_since.is_(None)
        )
    return Customer.id.in_(query)


_CARE_CALENDAR = sa.text("""
SELECT c.external_id AS customer_id, c.display_name, a.tier AS tier, o.occasion,
       o.next_date::text AS date, date_part('year', age(o.next_date, o.origin))::int AS years,
       o.next_date - DATE '2000-01-01' AS day_key, c.id AS customer_key, o.occasion_key
FROM (SELECT customer_id, effective_tier(a) AS tier FROM tier_assignment a WHERE policy_id = :policy_id) a
JOIN customer c ON c.id = a.customer_id AND c.erased_at IS NULL
CROSS JOIN LATERAL (VALUES ('birthday', c.birth_date, 0), ('anniversary', (c.onboarded_at AT TIME ZONE 'UTC')::date, 1))
     AS d(occasion, origin, occasion_key)
CROSS JOIN LATERAL (SELECT d.occasion, d.origin, d.occasion_key,
     (d.origin + (date_part('year', age(current_date - 1, d.origin)) + 1) * interval '1 year')::date AS next_date) o
WHERE a.tier = :tier AND d.origin IS NOT NULL AND o.next_date <= current_date + CAST(:days AS integer)
  AND date_part('year', age(o.next_date, o.origin)) >= 1
  AND (o.next_date - DATE '2000-01-01', c.id, o.occasion_key) > (:day_key, :customer_key, :occasion_key)
ORDER BY o.next_date, c.id, o.occasion_key
LIMIT :limit
""")


async def care_calendar(
    session: AsyncSession, policy_id: int, tier: str, days: int, after: tuple[int, ...] | None, limit: int
) -> list[dict[str, Any]]:
    """A page of the calendar (limit + 1 rows) in date order, after the key (day, customer, occasion) `after`."""
    day_key, customer_key, occasion_key = after or (-(2**31), 0, 0)
    params = {"policy_id": policy_id, "tier": tier, "days": days, "limit": limit + 1}
    params |= {"day_key": day_key, "customer_key": customer_key, "occasion_key": occasion_key}
    rows = await session.execute(_CARE_CALENDAR, params)
    return [dict(row._mapping) for row in rows]
