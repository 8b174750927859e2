"""The recommendation statements' SQL, assembled from named parts by `Statement.then`, the one place their
placeholders are numbered: a customer part (the offer state read, or computed and stored: app/recommendations/
offer_state.py, compiled with the catalog in app/recommendations/catalog.py), then the candidate part."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.core.db import driver_statement
from app.recommendations import offer_state
from app.recommendations.contact_suppression import SUPPRESSED


@dataclass(frozen=True)
class Statement:
    """SQL as asyncpg takes it ($n placeholders), the name of the parameter each number stands for ($1 first), and
    the values bound when it was compiled (a condition's thresholds), by name."""

    sql: str = ""
    names: tuple[str, ...] = ()
    bound: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def compiled(cls, head: str, statement, dialect) -> "Statement":
        """`head` (SQL without parameters), then a SQLAlchemy statement, whose parameters SQLAlchemy numbers."""
        sql, values, names = driver_statement(statement, dialect)
        return cls(head + sql, tuple(names), dict(zip(names, values, strict=True)))

    def then(self, template: str) -> "Statement":
        """This statement followed by `template`: SQL whose parameters are written {name} (a literal brace doubled,
        as str.format reads it). A name this statement has keeps its number; a new one takes the next."""
        names = list(self.names)

        class Numbers(dict):
            def __missing__(self, name: str) -> str:
                names.append(name)
                self[name] = f"${len(names)}"
                return self[name]

        sql = template.format_map(Numbers({name: f"${n}" for n, name in enumerate(self.names, 1)}))
        return Statement(self.sql + sql, tuple(names), self.bound)

    def arguments(self, **values: Any) -> list[Any]:
        """The statement and its arguments, as asyncpg's fetch takes them: `values` by name, else the bound ones."""
        bound = self.bound
        return [self.sql, *[values[name] if name in values else bound[name] for name in self.names]]


FAST_PATH_LOCKS = 16
"""Relations (tables and indexes) a backend locks through Postgres's per-backend fast path (FP_LOCK_SLOTS_PER_BACKEND
in Postgres 15-17). A statement that locks more puts the rest in the shared lock table, under its partition locks,
which concurrent requests contend for: the reading statement once locked 40 (every partition of feedback_event,
twice, with the contact policy's outcomes counted inline) and served a third fewer recommendations a second
(bench/RESULTS.md). tests/recommendations/test_contact_marks.py holds the reading statement within it."""

# After the customer's row (the CTE requested_customer: no row when there is no such customer), the candidates (when
# explaining, every product with the first filter that removes it, NULL for a candidate), as arrays ordered by
# product code, and the products held within the win-back window with the last day each was held.
CANDIDATES = (
    """
, tiers AS (  -- one row: the tier of the primary policy ('*': none) and the customer's tiers in every policy
    SELECT coalesce(max(t.tier) FILTER (WHERE t.key = {primary_policy}), '*') AS primary_tier,
           coalesce(array_agg(t.tier::text), '{{}}') AS codes
    FROM (SELECT p.key, effective_tier(a) AS tier
          FROM requested_customer rc JOIN tier_assignment a ON a.customer_id = rc.customer_id
          JOIN tier_policy p ON p.id = a.policy_id) t
), suppressed AS (  -- one row: the products and categories the contact policy suppresses now, and a rule of each
"""
    + SUPPRESSED
    + """
), previously AS (  -- products held within the win-back window, with the last day each was held
    SELECT array_agg(h.product_code) AS codes, array_agg(h.last_held) AS last_held FROM (
        SELECT b.product_code, max(b.as_of) AS last_held
        FROM requested_customer rc JOIN holding_balance b ON b.customer_id = rc.customer_id
        WHERE b.as_of > {now}::timestamptz::date - {winback_days}::integer
        GROUP BY b.product_code) h
), sold_out AS (  -- one row: the products whose quota is sold out now (a few rows of a small table, read per request)
    SELECT coalesce(array_agg(q.product_code), '{{}}') AS codes FROM product_quota q
    WHERE q.sold_out_until > {now}::timestamptz
), products AS (
    SELECT p.code,
           CASE
             WHEN NOT p.is_active OR p.active_from > {now}::timestamptz OR p.active_to <= {now}::timestamptz
               THEN 'inactive'
             WHEN p.code = ANY(so.codes) THEN 'sold_out'
             WHEN NOT ({channel}::text = ANY(p.channels)) THEN 'not_on_channel'
             WHEN p.code = ANY({exclude}::text[]) THEN 'excluded_by_caller'
             WHEN p.code = ANY(rc.held_products) THEN 'already_held'
             WHEN p.code = ANY(rc.ineligible) THEN 'not_eligible'
             WHEN cardinality(p.target_tiers) > 0 AND NOT (p.target_tiers && t.codes) THEN 'not_target_tier'
             WHEN p.risk_level > coalesce(rc.risk_tolerance, 1) THEN 'not_suitable'
             WHEN NOT coalesce(rc.marketing_consent, false) AND NOT p.is_service THEN 'no_marketing_consent'
             WHEN NOT p.is_service AND contact.rule IS NOT NULL THEN 'contact_policy'
           END AS filtered_by,
           CASE WHEN {explain}::boolean THEN contact.rule END AS contact_rule
    FROM requested_customer rc CROSS JOIN tiers t CROSS JOIN sold_out so CROSS JOIN product p
    CROSS JOIN LATERAL (SELECT least(s.rules[array_position(s.keys, 'product:' || p.code)],
                                     s.rules[array_position(s.keys, 'category:' || p.category)]) AS rule
                        FROM suppressed s) contact
    WHERE {explain}::boolean OR p.is_active
)
SELECT rc.*, t.primary_tier,
       c.codes, c.filtered_by, c.contact_rules, pv.codes AS held_before, pv.last_held AS held_until,
       CASE WHEN c.codes IS NULL THEN (  -- no candidate: the fallback message, when it is on (in this round trip;
           -- its one row, by its check, read without its primary key's index: FAST_PATH_LOCKS)
           SELECT ARRAY[f.code, f.texts::text] FROM recommendation_fallback f WHERE f.enabled) END
           AS fallback
FROM requested_customer rc CROSS JOIN tiers t CROSS JOIN previously pv
CROSS JOIN LATERAL (  -- one Agg reads the rows: its arrays are aligned
    SELECT array_agg(code) FILTER (WHERE {explain}::boolean OR filtered_by IS NULL) AS codes,
           array_agg(filtered_by) FILTER (WHERE {explain}::boolean) AS filtered_by,
           array_agg(contact_rule) FILTER (WHERE {explain}::boolean) AS contact_rules
    FROM (SELECT * FROM products ORDER BY code) ordered
) c
"""
)


def reading() -> Statement:
    """The customer's offer state when one holds ({external_id}; no row when none does), then the candidates."""
    return Statement().then(f"WITH requested_customer AS ({offer_state.STATE_OF_CUSTOMER}){CANDIDATES}")


def computing(customer: Statement) -> Statement:
    """The customer's offer state computed (`customer`: the catalog's statement over the customer found by
    {external_id}, after "WITH computed AS ("), stored, then the candidates."""
    return customer.then(f"""
), stored AS ({offer_state.STORE_COMPUTED}
), requested_customer AS (
    SELECT customer_id, external_id, held_products, risk_tolerance, marketing_consent, ineligible,
           explanation::text AS explanation, catalog_version, NULL::int AS ranker_version,
           NULL::text[] AS ranker_products, NULL::float8[] AS ranker_propensities, NULL::text[] AS ranker_reasons
    FROM computed
){CANDIDATES}""")


def refreshing(customers: Statement) -> Statement:
    """The offer states of many customers computed (`customers`: the catalog's statement over the customers in
    {ids}, after "WITH computed AS ("), and stored."""
    return customers.then(f"){offer_state.STORE_COMPUTED}")
