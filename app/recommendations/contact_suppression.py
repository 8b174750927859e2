"""The contact policy's outcomes for one customer, as a database function the recommendations' statement calls only
for a customer who has been contacted within the horizon.

Counting a customer's outcomes reads every partition of feedback_event twice (the impressions and dismisses, and
whether an impression was answered) and the invitation and manager-contact tables: some forty plan nodes, which
Postgres starts on every execution of a statement that holds them, even when a filter means they read nothing
(about 0.1 ms of a recommendation's 0.25 ms of backend CPU; bench/RESULTS.md). So the counting is a PL/pgSQL
function, `contact_suppression(customer_id, now)`, its own plan cached per connection and started only when it is
called, and the statement calls it only when the customer's contact mark (`customer_contact_mark`: the latest time
of any contact the policy counts, kept by triggers on the four tables, in the writing transaction) falls within
`HORIZON`. A customer never contacted, or not within the horizon, has no outcome the policy could count: nothing is
suppressed, the same answer the function would give.

The function's body is `SUPPRESSION_SQL` of this module, installed by a migration; tests/recommendations/
test_contact_marks.py holds the installed body equal to it (change one, install the other by a new migration).
"""

from app.engagement.audience import invitation_outcomes
from app.managers.queries import contact_outcomes as manager_contact_outcomes
from app.products.models import CATEGORIES

HORIZON = "400 days"
"""How far back the contact policy counts outcomes (no rule's window is longer)."""

_CATEGORIES = ", ".join(f"'{category}'" for category in CATEGORIES)  # every product category (a constant)
_CUSTOMER = "(SELECT $1::bigint AS customer_id) rc"

# $1: the customer's id, $2: now. Offers' outcomes (an impression not answered by a click, accept or convert is
# ignored), then contacts that offer no product, as the contact policy counts them against offers: programme
# invitations (app/engagement/audience.py) and managers' declined contacts (app/managers/queries.py) count in every
# product category (rules of scope `category`), and for no one product (rules of scope `product` skip them). One
# row: 'product:<code>' or 'category:<name>' for each product or category suppressed, and the first rule (by name)
# that suppresses it.
SUPPRESSION_SQL = f"""
WITH outcomes AS (
    SELECT e.product_code, pr.category, e.channel, e.occurred_at,
           CASE WHEN e.kind = 'dismiss' THEN 'dismiss'
                WHEN NOT EXISTS (SELECT 1 FROM feedback_event x WHERE x.recommendation_id = e.recommendation_id
                                 AND x.kind IN ('click', 'accept', 'convert')) THEN 'ignored_impression' END AS outcome
    FROM {_CUSTOMER} JOIN feedback_event e ON e.customer_id = rc.customer_id
    JOIN product pr ON pr.code = e.product_code
    WHERE e.kind IN ('impression', 'dismiss') AND e.occurred_at > $2 - interval '{HORIZON}'
    UNION ALL
    SELECT NULL, pc.category, o.channel, o.occurred_at, o.outcome
    FROM ({invitation_outcomes(_CUSTOMER)} UNION ALL {manager_contact_outcomes(_CUSTOMER)}) o
    CROSS JOIN unnest(ARRAY[{_CATEGORIES}]::text[]) AS pc(category)
    WHERE o.outcome IS NOT NULL AND o.occurred_at > $2 - interval '{HORIZON}'
), fired AS (  -- each active rule whose threshold the outcomes reach, with the product or category it suppresses
    SELECT r.scope, CASE r.scope WHEN 'product' THEN o.product_code ELSE o.category END AS target,
           min(r.name) AS rule
    FROM contact_rule r JOIN outcomes o ON o.outcome = r.outcome AND (r.channel IS NULL OR o.channel = r.channel)
         AND o.occurred_at > $2 - make_interval(days => r.window_days)
    WHERE r.is_active AND (r.scope = 'category' OR o.product_code IS NOT NULL)
    GROUP BY r.id, r.scope, r.threshold, r.suppress_days, 2
    HAVING count(*) >= r.threshold AND max(o.occurred_at) > $2 - make_interval(days => r.suppress_days)
)
SELECT array_agg(f.scope || ':' || f.target)::text[], array_agg(f.rule)::text[]
FROM (SELECT scope, target, min(rule) AS rule FROM fired GROUP BY scope, target) f"""

CREATE_FUNCTION = f"""
CREATE OR REPLACE FUNCTION contact_suppression(bigint, timestamptz) RETURNS TABLE (keys text[], rules text[])
LANGUAGE plpgsql STABLE ROWS 1 AS $function$
#variable_conflict use_column
BEGIN
    RETURN QUERY {SUPPRESSION_SQL};
END
$function$"""

# The tables holding contacts the policy counts, with the time each counts from and which rows count (a superset
# is safe: a mark only makes the statement count, and the count decides).
MARKED = {
    "feedback_event": ("occurred_at", "kind IN ('impression', 'dismiss')"),
    "community_membership": ("invited_at", "true"),
    "activity_participation": ("invited_at", "true"),
    "manager_contact": ("contacted_at", "true"),
}

# SQL, a part of the recommendations' statement ({now}: the request's time): the customer's suppressed keys and
# rules (one row), counted only when the customer's mark falls within the horizon, else none.
SUPPRESSED = f"""
    SELECT f.keys, f.rules
    FROM requested_customer rc LEFT JOIN customer_contact_mark m ON m.customer_id = rc.customer_id
    LEFT JOIN LATERAL (  -- OFFSET 0: not pulled up, so the mark's test gates the call (a one-time filter)
        SELECT * FROM contact_suppression(rc.customer_id, {{now}}::timestamptz)
        WHERE m.last_contact_at > {{now}}::timestamptz - interval '{HORIZON}' OFFSET 0) f ON true"""
