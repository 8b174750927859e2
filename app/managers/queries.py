"""The set-based statements of an assignment run and the coverage report. A run is one statement per step: release
those who left their manager's tiers, follow tier moves within them, then one statement per served (policy, tier)
that fills the managers' free slots in order of their fill ratio (k / capacity), so managers fill evenly by capacity
and none beyond it. Runs and manual reassignments are serialized by one transaction-level advisory lock."""

from sqlalchemy import text


def contact_outcomes(customers: str) -> str:
    """SQL: the managers' contacts with the customers in `customers` (a FROM item `rc` with a column customer_id)
    that the contact policy
    counts, as (customer_id, target, channel, occurred_at, outcome): a contact the customer declined is a dismiss.
    One that reached them (or a callback or follow-up they asked for) is engagement, and an unanswered call never
    reached them: neither counts. The recommendations count these (app/recommendations/queries.py)."""
    return f"""
    SELECT mc.customer_id, 'manager' AS target, mc.channel, mc.contacted_at AS occurred_at, 'dismiss' AS outcome
    FROM {customers} JOIN manager_contact mc ON mc.customer_id = rc.customer_id WHERE mc.outcome = 'declined'
"""


LOCK = text("SELECT pg_advisory_xact_lock(hashtext('tierwise.manager_assignment'))")

# Still eligible: the customer holds (effective tier: grace and overrides included) a tier the manager serves.
_SERVED = """
EXISTS (
    SELECT 1 FROM tier_assignment a JOIN tier_policy p ON p.id = a.policy_id
    WHERE a.customer_id = ma.customer_id AND p.key = m.policy_key AND effective_tier(a) = ANY(m.tiers)
)"""

RELEASE = text(f"""
WITH gone AS (
    DELETE FROM manager_assignment ma USING relationship_manager m
    WHERE m.id = ma.manager_id AND NOT (m.is_active AND {_SERVED})
    RETURNING ma.customer_id, ma.manager_id
)
INSERT INTO manager_assignment_change (customer_id, action, manager_id, previous_manager_id, run_id, actor)
SELECT customer_id, 'released', NULL, manager_id, :run_id, :actor FROM gone
""")

# A kept customer who moved between tiers their manager serves (private -> wealth) is served for the new one.
FOLLOW_TIER = text("""
UPDATE manager_assignment ma SET tier = effective_tier(a)
FROM relationship_manager m, tier_assignment a, tier_policy p
WHERE m.id = ma.manager_id AND p.key = m.policy_key AND a.policy_id = p.id AND a.customer_id = ma.customer_id
  AND effective_tier(a) IS DISTINCT FROM ma.tier
""")

# The served (policy, tier) pairs, highest tiers first: they take free slots before lower ones.
POOLS = text("""
SELECT DISTINCT m.policy_key, t.tier, coalesce((
    SELECT (x ->> 'rank')::int
    FROM tier_policy p JOIN tier_policy_version v ON v.policy_id = p.id AND v.status = 'active',
         jsonb_array_elements(v.tiers) x
    WHERE p.key = m.policy_key AND x ->> 'code' = t.tier
), 0) AS rank
FROM relationship_manager m, unnest(m.tiers) t(tier)
WHERE m.is_active
ORDER BY rank DESC, m.policy_key, t.tier
""")

ASSIGN_POOL = text("""
WITH load AS (
    SELECT manager_id, count(*) AS n FROM manager_assignment GROUP BY manager_id
),
slots AS (
    SELECT m.id AS manager_id, row_number() OVER (ORDER BY k::numeric / m.capacity, m.id) AS slot
    FROM relationship_manager m
    LEFT JOIN load l ON l.manager_id = m.id
    CROSS JOIN LATERAL generate_series(coalesce(l.n, 0) + 1, m.capacity) k
    WHERE m.is_active AND m.policy_key = :policy_key AND :tier = ANY(m.tiers)
),
waiting AS (
    SELECT a.customer_id, row_number() OVER (ORDER BY a.customer_id) AS slot
    FROM tier_assignment a
    JOIN tier_policy p ON p.id = a.policy_id
    JOIN customer c ON c.id = a.customer_id AND c.erased_at IS NULL
    WHERE p.key = :policy_key AND effective_tier(a) = :tier
      AND NOT EXISTS (SELECT 1 FROM manager_assignment ma WHERE ma.customer_id = a.customer_id)
),
placed AS (
    INSERT INTO manager_assignment (customer_id, manager_id, policy_key, tier, source)
    SELECT w.customer_id, s.manager_id, :policy_key, :tier, 'run' FROM waiting w JOIN slots s USING (slot)
    RETURNING customer_id, manager_id
)
INSERT INTO manager_assignment_change (customer_id, action, manager_id, run_id, actor)
SELECT customer_id, 'assigned', manager_id, :run_id, :actor FROM placed
""")

UNASSIGNED = text("""
SELECT count(DISTINCT a.customer_id)
FROM tier_assignment a
JOIN tier_policy p ON p.id = a.policy_id
JOIN relationship_manager m ON m.is_active AND m.policy_key = p.key AND effective_tier(a) = ANY(m.tiers)
JOIN customer c ON c.id = a.customer_id AND c.erased_at IS NULL
WHERE NOT EXISTS (SELECT 1 FROM manager_assignment ma WHERE ma.customer_id = a.customer_id)
""")

TIER_COVERAGE = text("""
WITH pools AS (
    SELECT DISTINCT m.policy_key, t.tier FROM relationship_manager m, unnest(m.tiers) t(tier) WHERE m.is_active
)
SELECT pools.policy_key, pools.tier, count(a.customer_id) AS customers, count(ma.customer_id) AS with_manager
FROM pools
LEFT JOIN tier_policy p ON p.key = pools.policy_key
LEFT JOIN tier_assignment a ON a.policy_id = p.id AND effective_tier(a) = pools.tier
LEFT JOIN manager_assignment ma ON ma.customer_id = a.customer_id
GROUP BY pools.policy_key, pools.tier
ORDER BY pools.policy_key, pools.tier
""")

# The customer's tier under the manager's policy, if it is one the manager serves.
SERVED_TIER = text("""
SELECT effective_tier(a) FROM tier_assignment a JOIN tier_policy p ON p.id = a.policy_id
WHERE a.customer_id = :customer_id AND p.key = :policy_key AND effective_tier(a) = ANY(:tiers)
""")

# Worklist generation for one manager's customers, one statement per kind, each task once (the unique key).
# Downgrade at risk: the customer no longer qualifies for the tier they are served for; due when the grace ends.
AT_RISK_TASKS = text("""
INSERT INTO manager_task (customer_id, kind, period, reason, due_on)
SELECT ma.customer_id, 'downgrade_at_risk', a.lower_since::date::text,
       format('Qualifies for %s since %s; keeps %s until %s unless they qualify again.',
              a.qualified_code, a.lower_since::date, a.tier_code,
              (a.lower_since + make_interval(days => v.downgrade_grace_days))::date),
       (a.lower_since + make_interval(days => v.downgrade_grace_days))::date
FROM manager_assignment ma
JOIN tier_policy p ON p.key = ma.policy_key
JOIN tier_assignment a ON a.policy_id = p.id AND a.customer_id = ma.customer_id
JOIN tier_policy_version v ON v.id = a.version_id
WHERE ma.manager_id = :manager_id AND a.lower_since IS NOT NULL AND NOT tier_override_applies(a)
ON CONFLICT (customer_id, kind, period) DO NOTHING
""")

# Contact cadence overdue: no contact (by anyone) in the tier's cadence since the last one or the assignment.
CADENCE_TASKS = text("""
INSERT INTO manager_task (customer_id, kind, period, reason, due_on)
SELECT s.customer_id, 'cadence_overdue', s.due_on::text,
       format('No contact since %s; %s customers are contacted every %s days.', s.since::date, s.tier, s.days),
       s.due_on
FROM (
    SELECT ma.customer_id, ma.tier, c.days, coalesce(last.at, ma.assigned_at) AS since,
           (coalesce(last.at, ma.assigned_at) + make_interval(days => c.days))::date AS due_on
    FROM manager_assignment ma
    JOIN contact_cadence c ON c.policy_key = ma.policy_key AND c.tier = ma.tier
    LEFT JOIN LATERAL (
        SELECT max(contacted_at) AS at FROM manager_contact mc WHERE mc.customer_id = ma.customer_id
    ) last ON true
    WHERE ma.manager_id = :manager_id
) s
WHERE s.due_on <= :today
ON CONFLICT (customer_id, kind, period) DO NOTHING
""")
