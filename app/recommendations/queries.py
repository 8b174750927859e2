"""The recommendation statements' SQL, assembled from named parts by `Statement.then`, the one place their
placeholders are numbered: a customer part (the offer state read, or computed and stored: app/recommendations/
offer_state.py, compiled with the catalog in app/recommendations/catalog.py), then the candidate part."""

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.core.db import driver_statement
from app.engagement.audience import invitation_outcomes
from app.managers.queries import contact_outcomes as manager_contact_outcomes
from app.products.models import CATEGORIES
from app.recommendations import offer_state

_REQUESTED = "requested_customer rc"
_CATEGORIES = ", ".join(f"'{category}'" for category in CATEGORIES)  # every product category (a constant)

# Contacts that offer no product, as the contact policy counts them against offers: programme invitations
# (app/engagement/audience.py) and managers' declined contacts (app/managers/queries.py) count in every product
# category (rules of scope `category`), and for no one product (rules of scope `product` skip them).
CONTACTS_BEYOND_OFFERS = f"""
    UNION ALL
    SELECT NULL, pc.category, o.channel, o.occurred_at, o.outcome
    FROM ({invitation_outcomes(_REQUESTED)} UNION ALL {manager_contact_outcomes(_REQUESTED)}) o
    CROSS JOIN unnest(ARRAY[{_CATEGORIES}]::text[]) AS pc(category)
    WHERE o.outcome IS NOT NULL AND o.occurred_at > {{now}}::timestamptz - interval '400 days'"""


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


# The candidate part, after the customer's row (the CTE requested_customer: no row when there is no such customer):
# the customer's tiers, what the contact policy suppresses (one of the CONTACT_ parts below: the CTE `suppressed`,
# one row of two aligned arrays), then the candidates (when explaining, every product with the first filter that
# removes it, NULL for a candidate), as arrays ordered by product code, and the products held within the win-back
# window with the last day each was held.
_TIERS = """
, tiers AS (  -- one row: the tier of the primary policy ('*': none) and the customer's tiers in every policy
    SELECT coalesce(max(t.tier) FILTER (WHERE t.key = {primary_policy}), '*') AS primary_tier,
           coalesce(array_agg(t.tier::text), '{{}}') AS codes
    FROM (SELECT p.key, effective_tier(a) AS tier
          FROM requested_customer rc JOIN tier_assignment a ON a.customer_id = rc.customer_id
          JOIN tier_policy p ON p.id = a.policy_id) t
"""

# The contact policy's outcomes counted over what it counts: impressions and dismissals of offers (feedback_event),
# programme invitations and managers' contacts, within 400 days.
CONTACT_COUNTED = (
    """
), outcomes AS (
    SELECT e.product_code, pr.category, e.channel, e.occurred_at,
           CASE WHEN e.kind = 'dismiss' THEN 'dismiss'
                WHEN NOT EXISTS (SELECT 1 FROM feedback_event x WHERE x.recommendation_id = e.recommendation_id
                                 AND x.kind IN ('click', 'accept', 'convert')) THEN 'ignored_impression' END AS outcome
    FROM requested_customer rc JOIN feedback_event e ON e.customer_id = rc.customer_id
    JOIN product pr ON pr.code = e.product_code
    WHERE e.kind IN ('impression', 'dismiss') AND e.occurred_at > {now}::timestamptz - interval '400 days'
"""
    + CONTACTS_BEYOND_OFFERS
    + """
), fired AS (  -- each active rule whose threshold the outcomes reach, with the product or category it suppresses
    SELECT r.scope, CASE r.scope WHEN 'product' THEN o.product_code ELSE o.category END AS target,
           min(r.name) AS rule
    FROM contact_rule r JOIN outcomes o ON o.outcome = r.outcome AND (r.channel IS NULL OR o.channel = r.channel)
         AND o.occurred_at > {now}::timestamptz - make_interval(days => r.window_days)
    WHERE r.is_active AND (r.scope = 'category' OR o.product_code IS NOT NULL)
    GROUP BY r.id, r.scope, r.threshold, r.suppress_days, 2
    HAVING count(*) >= r.threshold
       AND max(o.occurred_at) > {now}::timestamptz - make_interval(days => r.suppress_days)
), suppressed AS (  -- one row: 'product:<code>' or 'category:<name>', and the first rule (by name) for each
    SELECT array_agg(f.scope || ':' || f.target) AS keys, array_agg(f.rule) AS rules
    FROM (SELECT scope, target, min(rule) AS rule FROM fired GROUP BY scope, target) f
"""
)

# The outcome stored with the offer state (requested_customer's contact_keys and contact_rules: STATE_OF_CUSTOMER),
# when it holds (its contact_known): one row read, none of the counting's plan nodes started.
CONTACT_STORED = """
), suppressed AS (SELECT rc.contact_keys AS keys, rc.contact_rules AS rules FROM requested_customer rc
"""

# The outcome counted, and stored with the offer state for the requests that follow: at the contact generation the
# state was read at (a write to what the policy counts since moves it on, and stores nothing), under the policy's
# version the rules were read at, from {now} until the first instant at which an outcome counted could leave a
# rule's window, its rest or the 400 days (an hour earlier: days are added in the session's time zone).
CONTACT_STORING = (
    CONTACT_COUNTED
    + """
), contact_changes AS (
    SELECT coalesce(min(b.at), 'infinity') - interval '1 hour' AS until FROM (
        SELECT o.occurred_at + make_interval(days => d.days) AS at
        FROM outcomes o JOIN contact_rule r ON r.is_active AND o.outcome = r.outcome
        CROSS JOIN LATERAL (VALUES (r.window_days), (r.suppress_days)) AS d(days)
        UNION ALL
        SELECT o.occurred_at + interval '400 days' FROM outcomes o) b
    WHERE b.at > {now}::timestamptz
), contact_stored AS (
    UPDATE customer_offer_state s
    SET contact_keys = su.keys, contact_rules = su.rules, contact_from = {now}::timestamptz,
        contact_until = cc.until, contact_policy = (SELECT version FROM contact_policy_version)
    FROM requested_customer rc, suppressed su, contact_changes cc
    WHERE s.customer_id = rc.customer_id AND s.contact_generation = rc.contact_generation
"""
)

_CANDIDATES = """
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
       CASE WHEN c.codes IS NULL THEN (  -- no candidate: the fallback message, when it is on (in this round trip)
           SELECT ARRAY[f.code, f.texts::text] FROM recommendation_fallback f WHERE f.id = 1 AND f.enabled) END
           AS fallback
FROM requested_customer rc CROSS JOIN tiers t CROSS JOIN previously pv
CROSS JOIN LATERAL (  -- one Agg reads the rows: its arrays are aligned
    SELECT array_agg(code) FILTER (WHERE {explain}::boolean OR filtered_by IS NULL) AS codes,
           array_agg(filtered_by) FILTER (WHERE {explain}::boolean) AS filtered_by,
           array_agg(contact_rule) FILTER (WHERE {explain}::boolean) AS contact_rules
    FROM (SELECT * FROM products ORDER BY code) ordered
) c
"""


def candidates(contact: str) -> str:
    """The candidate part (a template) with one of the contact parts."""
    return _TIERS + contact + _CANDIDATES


CANDIDATES = candidates(CONTACT_COUNTED)
"""The candidate part counting the contact policy's outcomes."""


def reading() -> Statement:
    """The customer's offer state when one holds ({external_id}; no row when none does), then the candidates with
    the contact outcome stored with it (valid only where the row's contact_known is true)."""
    return Statement().then(f"WITH requested_customer AS ({offer_state.STATE_OF_CUSTOMER}){candidates(CONTACT_STORED)}")


def reading_contact() -> Statement:
    """`reading`, the contact outcome counted and stored with the state (for a state whose stored one does not hold)."""
    return Statement().then(
        f"WITH requested_customer AS ({offer_state.STATE_OF_CUSTOMER}){candidates(CONTACT_STORING)}"
    )


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


def refreshing_for_ranker(customers: Statement) -> Statement:
    """`refreshing`, giving each state it stored (a row per customer) and its candidates among the learned ranker's
    products ({model_products}) as bits (offer_state.CANDIDATE_BITS): what the ranker's scoring reads of them."""
    return customers.then(
        f"){offer_state.STORE_COMPUTED}\nRETURNING s.customer_id, {offer_state.CANDIDATE_BITS} AS candidates"
    )
