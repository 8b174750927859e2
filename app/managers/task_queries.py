"""The set-based statements that generate the configurable worklist task kinds for one manager's customers, one
statement per kind, each task once (the unique key on customer, kind and period): care dates (birthdays,
anniversaries, the care calendar's holidays), complaints open past their SLA and valuable customers gone quiet (by
their lifecycle tier, or by their churn risk). Near-miss upgrades are in app.managers.near_miss (they need the
benefits view's gap computation)."""

from sqlalchemy import text

# The next birthday or onboarding anniversary on or after :today (a 29 February one falls on the 28th), within
# :days_before days: due :days_before days before it. Not for the first one (a newborn or new customer).
CARE_DATE_TASKS = text("""
INSERT INTO manager_task (customer_id, kind, period, reason, due_on)
SELECT o.customer_id, 'care_date', o.occasion || ':' || o.next_date,
       CASE o.occasion
           WHEN 'birthday' THEN format('Birthday on %s (%s years): a greeting is due %s days before.',
                                       o.next_date, o.years, CAST(:days_before AS integer))
           ELSE format('%s years a customer on %s: a greeting is due %s days before.',
                       o.years, o.next_date, CAST(:days_before AS integer))
       END,
       o.next_date - CAST(:days_before AS integer)
FROM (
    SELECT ma.customer_id, d.occasion, n.next_date,
           date_part('year', age(n.next_date, d.origin))::int AS years
    FROM manager_assignment ma
    JOIN customer c ON c.id = ma.customer_id AND c.erased_at IS NULL
    CROSS JOIN LATERAL (
        VALUES ('birthday', c.birth_date, CAST(:birthdays AS boolean)),
               ('anniversary', (c.onboarded_at AT TIME ZONE 'UTC')::date, CAST(:anniversaries AS boolean))
    ) AS d(occasion, origin, wanted)
    CROSS JOIN LATERAL (
        SELECT (d.origin + (date_part('year', age(CAST(:today AS date) - 1, d.origin)) + 1) * interval '1 year')::date
               AS next_date
    ) n
    WHERE ma.manager_id = :manager_id AND d.wanted AND d.origin IS NOT NULL AND d.origin < CAST(:today AS date)
) o
WHERE o.years >= 1 AND o.next_date <= CAST(:today AS date) + CAST(:days_before AS integer)
ON CONFLICT (customer_id, kind, period) DO NOTHING
""")

# Each holiday of the care calendar from :today to :days_before days ahead, for every customer of the manager.
HOLIDAY_TASKS = text("""
INSERT INTO manager_task (customer_id, kind, period, reason, due_on)
SELECT ma.customer_id, 'care_date', 'holiday:' || h.holiday_key,
       format('%s on %s: a greeting is due %s days before.', h.name, h.day, CAST(:days_before AS integer)),
       h.day - CAST(:days_before AS integer)
FROM manager_assignment ma
JOIN customer c ON c.id = ma.customer_id AND c.erased_at IS NULL
JOIN care_holiday h ON h.day BETWEEN CAST(:today AS date) AND CAST(:today AS date) + CAST(:days_before AS integer)
WHERE ma.manager_id = :manager_id
ON CONFLICT (customer_id, kind, period) DO NOTHING
""")

# A complaint still open or in progress past its category's SLA (or the default): due when the SLA ran out.
COMPLAINT_TASKS = text("""
INSERT INTO manager_task (customer_id, kind, period, reason, due_on)
SELECT x.customer_id, 'complaint_overdue', 'complaint:' || x.id,
       format('Complaint %s (%s) %s since %s: %s day%s, past its SLA of %s day%s.',
              x.id, x.category, replace(x.status, '_', ' '), x.opened_on,
              x.elapsed, CASE WHEN x.elapsed = 1 THEN '' ELSE 's' END, x.sla, CASE WHEN x.sla = 1 THEN '' ELSE 's' END),
       x.opened_on + x.sla
FROM (
    SELECT c.id, c.customer_id, c.category, c.status, (c.opened_at AT TIME ZONE 'UTC')::date AS opened_on,
           CAST(:today AS date) - (c.opened_at AT TIME ZONE 'UTC')::date AS elapsed,
           coalesce((CAST(:by_category AS jsonb) ->> c.category)::int, CAST(:days AS integer)) AS sla
    FROM manager_assignment ma
    JOIN complaint c ON c.customer_id = ma.customer_id AND c.status IN ('open', 'in_progress')
    WHERE ma.manager_id = :manager_id
) x
WHERE x.opened_on + x.sla <= CAST(:today AS date)
ON CONFLICT (customer_id, kind, period) DO NOTHING
""")


# Gone-quiet candidates: customers in a valuable tier whose lifecycle tier is a quiet one (declining, dormant),
# with the facts of their lifecycle assignment (what says why); once per stay in it (the period), and none while a
# task of the kind is still open.
GONE_QUIET_CANDIDATES = text("""
SELECT ma.customer_id, effective_tier(la) || ':' || (la.since AT TIME ZONE 'UTC')::date AS period,
       effective_tier(la) AS tier, effective_rank(la) AS rank, (la.since AT TIME ZONE 'UTC')::date AS since,
       effective_tier(va) AS valuable_tier, la.version_id, v.updated_at AS version_updated_at, la.facts,
       CAST(:today AS date) - (c.last_txn_at AT TIME ZONE 'UTC')::date AS days_since_txn
FROM manager_assignment ma
JOIN customer c ON c.id = ma.customer_id AND c.erased_at IS NULL
JOIN tier_policy lp ON lp.key = :lifecycle_policy_key
JOIN tier_assignment la ON la.policy_id = lp.id AND la.customer_id = ma.customer_id
JOIN tier_policy_version v ON v.id = la.version_id
JOIN tier_policy vp ON vp.key = :valuable_policy_key
JOIN tier_assignment va ON va.policy_id = vp.id AND va.customer_id = ma.customer_id
WHERE ma.manager_id = :manager_id
  AND effective_tier(la) = ANY(CAST(:quiet_tiers AS text[]))
  AND effective_tier(va) = ANY(CAST(:valuable_tiers AS text[]))
  AND NOT EXISTS (
      SELECT 1 FROM manager_task t
      WHERE t.customer_id = ma.customer_id AND t.kind = 'gone_quiet'
        AND (t.state IN ('open', 'snoozed')
             OR t.period = effective_tier(la) || ':' || (la.since AT TIME ZONE 'UTC')::date)
  )
ORDER BY ma.customer_id
""")

# Churn-risk candidates: customers in a valuable tier with no gone-quiet task open nor one of this period (a month),
# whose churn_risk app.managers.quiet then reads from customer_features_for(their ids).
CHURN_CANDIDATES = text("""
SELECT ma.customer_id, effective_tier(va) AS valuable_tier
FROM manager_assignment ma
JOIN customer c ON c.id = ma.customer_id AND c.erased_at IS NULL
JOIN tier_policy vp ON vp.key = :valuable_policy_key
JOIN tier_assignment va ON va.policy_id = vp.id AND va.customer_id = ma.customer_id
WHERE ma.manager_id = :manager_id
  AND effective_tier(va) = ANY(CAST(:valuable_tiers AS text[]))
  AND NOT EXISTS (
      SELECT 1 FROM manager_task t
      WHERE t.customer_id = ma.customer_id AND t.kind = 'gone_quiet'
        AND (t.state IN ('open', 'snoozed') OR t.period = :period)
  )
ORDER BY ma.customer_id
""")

CHURN_MODEL_EXISTS = text("SELECT EXISTS (SELECT 1 FROM churn_model)")

# The churn_risk of those customers at or above the threshold, as the features view scores it (the newest churn
# model), with that model's version read in the same statement; nothing when no model is fitted.
CHURN_SCORES = text("""
SELECT f.customer_id, f.churn_risk, m.version
FROM customer_features_for(CAST(:customer_ids AS bigint[])) f
CROSS JOIN (SELECT version FROM churn_model ORDER BY version DESC LIMIT 1) m
WHERE f.churn_risk >= CAST(:min_churn_risk AS numeric)
ORDER BY f.customer_id
""")

# Near-miss candidates: the manager's customers under the manager's policy below its top tier, with the facts of
# their assignment (what the gap is computed from), and no near-miss task open nor any of this month's.
NEAR_MISS_CANDIDATES = text("""
SELECT ma.customer_id, a.version_id, v.updated_at AS version_updated_at, effective_tier(a) AS tier,
       effective_rank(a) AS rank, a.facts
FROM manager_assignment ma
JOIN tier_policy p ON p.key = ma.policy_key
JOIN tier_assignment a ON a.policy_id = p.id AND a.customer_id = ma.customer_id
JOIN tier_policy_version v ON v.id = a.version_id
WHERE ma.manager_id = :manager_id
  AND effective_rank(a) < (SELECT max((x ->> 'rank')::int) FROM jsonb_array_elements(v.tiers) x)
  AND NOT EXISTS (
      SELECT 1 FROM manager_task t
      WHERE t.customer_id = ma.customer_id AND t.kind = 'near_miss_upgrade'
        AND (t.state IN ('open', 'snoozed') OR t.period LIKE '%:' || to_char(CAST(:today AS date), 'YYYY-MM'))
  )
ORDER BY ma.customer_id
""")

# The tasks of one kind worked out in Python (near-miss upgrades, gone quiet), in one statement, due :today.
TASKS_INSERT = text("""
INSERT INTO manager_task (customer_id, kind, period, reason, due_on)
SELECT customer_id, :kind, period, reason, CAST(:today AS date)
FROM unnest(CAST(:customer_ids AS bigint[]), CAST(:periods AS text[]), CAST(:reasons AS text[]))
     AS n(customer_id, period, reason)
ON CONFLICT (customer_id, kind, period) DO NOTHING
""")
