"""The recommendation statements' SQL: the candidate part, read after the customer's offer state."""

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
