"""A customer's offer state: what the candidate filter needs of a customer, computed once and read until it can
change (the table customer_offer_state, app.recommendations.models.CustomerOfferState).

A recommendation first reads the customer's state (`STATE_OF_CUSTOMER`: one row by index; the statements are
assembled in app/recommendations/queries.py). Only when none holds does it compute the customer's features and
every product's eligibility, the compiled catalog's SQL, and store what it found (`STORE_COMPUTED`), in the same
statement. Both give the same columns, the explanation included, so a state read and a state computed give the same
answer.

A state holds while the catalog version and the risk validity it was computed with stand and `valid_until` has not
passed (app.rules.attributes.features_stable_until). Every write to a customer's data bumps the state's
generation in the writing transaction, and makes it stale when it changes an attribute the state reads
(`mark_stale`, from the flows every customer write goes through, app/customers/flows.py, erasure included). A
computed state is stored only if its generation is still the one the computation read, and only if it was
compiled from the current catalog:
a computation that read before a write cannot store what that write changed, whichever commits first, even when
its catalog reads what the state's did not, and an instance whose compiled catalog is out of date stores nothing.
"""

from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.rules.attributes import RISK_VALID_DAYS

_OUTCOMES = Counter(
    "tierwise_offer_states_total",
    "Recommendations by whether the customer's offer state was read or had to be computed",
    ["outcome"],
)
READ, COMPUTED = _OUTCOMES.labels("read"), _OUTCOMES.labels("computed")

ALWAYS_READ = frozenset({"held_products", "risk_tolerance", "marketing_consent"})
"""What every state reads, besides the attributes of the catalog's conditions."""

HOLDS = (
    "s.valid_until > now() AND s.catalog_version = (SELECT version FROM catalog_version) "
    f"AND s.risk_valid_days = {RISK_VALID_DAYS}"
)
"""SQL: whether the offer state `s` holds now."""

CANDIDATE_BITS = """(SELECT coalesce(sum(1::bigint << (k - 1)::int), 0)
 FROM unnest({model_products}::text[]) WITH ORDINALITY AS m(code, k) JOIN product p ON p.code = m.code
 WHERE NOT coalesce(p.code = ANY(s.held_products), false) AND NOT coalesce(p.code = ANY(s.ineligible), false)
   AND p.risk_level <= coalesce(s.risk_tolerance, 1) AND (coalesce(s.marketing_consent, false) OR p.is_service))"""
"""SQL template: which of the learned ranker's products ({model_products}, in the model's order) are still
candidates of the offer state `s` by what it knows (not held, eligible, suitable to the risk tolerance, consented
to, as app/recommendations/queries.py filters them), as bits (bit k: the model's k-th product): the others are
never shown, and the model spends nothing on them."""

CONTACT_HOLDS = (
    "coalesce(s.contact_policy = (SELECT version FROM contact_policy_version) "
    "AND s.contact_from <= {now}::timestamptz AND {now}::timestamptz < s.contact_until, false)"
)
"""SQL template: whether the contact outcome stored with the offer state `s` holds at {now} (app/recommendations/
queries.py: counted under the current contact policy, and no write to what it counts since, which clears it)."""

# The customer's offer state, when it holds, in the columns the computing statement gives, then its stored contact
# outcome and whether that holds: a template of app/recommendations/queries.py ({external_id}: the customer's
# external id; {now}: the request's time).
STATE_OF_CUSTOMER = f"""
SELECT c.id AS customer_id, c.external_id, s.held_products, s.risk_tolerance, s.marketing_consent, s.ineligible,
       s.explanation::text AS explanation, s.catalog_version,
       s.ranker_version, s.ranker_products, s.ranker_propensities, s.ranker_reasons,
       s.contact_generation, s.contact_keys, s.contact_rules, {CONTACT_HOLDS} AS contact_known
FROM customer c JOIN customer_offer_state s ON s.customer_id = c.id
WHERE c.external_id = {{external_id}} AND c.erased_at IS NULL AND {HOLDS}
"""


# The state the CTE `computed` found, stored unless a write has marked the state stale since it read the generation
# (offer_generation; none: there was no row, and a row now is a write's) or the catalog it was compiled from
# (offer_catalog_version) is no longer the current one (catalog_version).
STORE_COMPUTED = """
    INSERT INTO customer_offer_state AS s (customer_id, generation, valid_until, catalog_version, risk_valid_days,
                                           held_products, risk_tolerance, marketing_consent, ineligible, explanation,
                                           reads)
    SELECT customer_id, coalesce(offer_generation, 0), offer_valid_until, offer_catalog_version,
           offer_risk_valid_days, held_products, risk_tolerance, marketing_consent, ineligible, explanation,
           offer_reads
    FROM computed WHERE offer_catalog_version = catalog_version
    ON CONFLICT (customer_id) DO UPDATE SET
        valid_until = excluded.valid_until, catalog_version = excluded.catalog_version,
        risk_valid_days = excluded.risk_valid_days, held_products = excluded.held_products,
        risk_tolerance = excluded.risk_tolerance, marketing_consent = excluded.marketing_consent,
        ineligible = excluded.ineligible, explanation = excluded.explanation, reads = excluded.reads,
        ranker_version = NULL, ranker_products = NULL, ranker_propensities = NULL, ranker_reasons = NULL
    WHERE s.generation = excluded.generation"""

# In one statement, in customer-id order: every written customer's generation moves on (a customer without a state
# gets a stale one, at generation 1), and a state that reads one of the attributes the write changed (:changed;
# null: any) no longer holds and keeps nothing of the customer's (what it reads stays: it names attributes, and
# marks a customer whose state was once computed).
_STALE = "(CAST(:changed AS text[]) IS NULL OR s.reads && CAST(:changed AS text[]))"
_CLEARED = {
    "valid_until": "'-infinity'",
    **dict.fromkeys(
        (
            "catalog_version",
            "risk_valid_days",
            "held_products",
            "risk_tolerance",
            "marketing_consent",
            "ineligible",
            "explanation",
            "ranker_version",
            "ranker_products",
            "ranker_propensities",
            "ranker_reasons",
        ),
        "NULL",
    ),
}
MARK_STALE_SQL = (
    "INSERT INTO customer_offer_state AS s (customer_id, generation, valid_until) "
    "SELECT id, 1, '-infinity' FROM unnest(CAST(:ids AS bigint[])) AS id ORDER BY id "
    "ON CONFLICT (customer_id) DO UPDATE SET generation = s.generation + 1, "
    + ", ".join(
        f"{column} = CASE WHEN {_STALE} THEN {cleared} ELSE s.{column} END" for column, cleared in _CLEARED.items()
    )
)
"""SQL of mark_stale (:ids, :changed), for an intake that writes in one statement (app.customers.events)."""
_MARK_STALE = text(MARK_STALE_SQL)


async def mark_stale(session: AsyncSession, customer_ids, changed: frozenset[str] | None = None) -> None:
    """In a transaction that writes these customers' data (`changed`: the attributes the write can have moved;
    None: any): no computation that read before this write may store a state (the generation moves on; a new row
    starts at 1, above what a computation that found no row stores), and a state that reads one of `changed` no
    longer holds and keeps nothing of the customer's."""
    ids = sorted(set(customer_ids))
    if ids:
        await session.execute(_MARK_STALE, {"ids": ids, "changed": sorted(changed) if changed is not None else None})


# The next customers (by id, after :after) whose offer state does not hold: those whose state was once computed
# (customers who ask for recommendations), or with :everyone every customer.
_NOT_HOLDING = text(f"""
SELECT c.id FROM customer c LEFT JOIN customer_offer_state s ON s.customer_id = c.id
WHERE c.id > :after AND c.erased_at IS NULL AND NOT coalesce({HOLDS}, false)
  AND (CAST(:everyone AS boolean) OR s.reads IS NOT NULL)
ORDER BY c.id LIMIT :limit
""")


async def not_holding(session: AsyncSession, *, after: int, limit: int, everyone: bool) -> list[int]:
    """The ids of the next customers whose offer state should be computed again (see `_NOT_HOLDING`)."""
    return list((await session.scalars(_NOT_HOLDING, {"after": after, "limit": limit, "everyone": everyone})).all())
