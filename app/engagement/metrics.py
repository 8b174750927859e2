"""Community metrics: members, joins and leaves, active members and stickiness, satisfaction of members against
non-members of the same tiers, and the members' tier migrations since joining. One statement per figure group."""

from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.engagement.models import Community

DEFAULT_TIER_POLICY = "loyalty"
ACTIVE_DAYS = 30

_MEMBERS = """
members AS (
    SELECT customer_id, joined_at FROM community_membership
    WHERE community_id = :community_id AND joined_at < :to AND (ended_at IS NULL OR ended_at >= :to)
)"""

_COUNTS = text(f"""
WITH {_MEMBERS}
SELECT (SELECT count(*) FROM members) AS members,
       (SELECT count(*) FROM community_membership_move WHERE community_id = :community_id
          AND to_state = 'joined' AND at >= :from_ AND at < :to) AS joins,
       (SELECT count(*) FROM community_membership_move WHERE community_id = :community_id
          AND to_state IN ('left', 'removed') AND from_state = 'joined' AND at >= :from_ AND at < :to) AS leaves,
       (SELECT count(DISTINCT e.customer_id) FROM community_activity_event e JOIN members m USING (customer_id)
          WHERE e.community_id = :community_id AND e.occurred_at >= :active_from AND e.occurred_at < :to) AS active
""")

_SATISFACTION = text(f"""
WITH {_MEMBERS}, tiers AS (
    SELECT a.customer_id, effective_tier(a) AS tier FROM tier_assignment a
    WHERE a.policy_id = (SELECT id FROM tier_policy WHERE key = :policy)
), non_members AS (
    SELECT t.customer_id FROM tiers t JOIN customer c ON c.id = t.customer_id AND c.erased_at IS NULL
    WHERE t.tier IN (SELECT t2.tier FROM members m JOIN tiers t2 USING (customer_id))
      AND t.customer_id NOT IN (SELECT customer_id FROM members)
), grouped AS (
    SELECT customer_id, 'members' AS grp FROM members
    UNION ALL SELECT customer_id, 'non_members' FROM non_members
), latest_nps AS (
    SELECT DISTINCT ON (s.customer_id) s.customer_id, s.score
    FROM survey_response s JOIN grouped g USING (customer_id)
    WHERE s.kind = 'nps' AND s.occurred_at >= :from_ AND s.occurred_at < :to
    ORDER BY s.customer_id, s.occurred_at DESC, s.id DESC
), csat AS (
    SELECT s.customer_id, count(*) AS answers, sum(s.score) AS total
    FROM survey_response s JOIN grouped g USING (customer_id)
    WHERE s.kind = 'csat' AND s.occurred_at >= :from_ AND s.occurred_at < :to
    GROUP BY s.customer_id
)
SELECT g.grp, count(*) AS customers, count(n.score) AS nps_responses,
       count(*) FILTER (WHERE n.score >= 9) AS promoters, count(*) FILTER (WHERE n.score <= 6) AS detractors,
       coalesce(sum(c.answers), 0) AS csat_responses, sum(c.total) AS csat_total
FROM grouped g LEFT JOIN latest_nps n USING (customer_id) LEFT JOIN csat c USING (customer_id)
GROUP BY g.grp
""")

_MIGRATIONS = text(f"""
WITH {_MEMBERS}
SELECT t.from_code AS from_tier, t.to_code AS to_tier, t.direction, count(DISTINCT t.customer_id) AS customers
FROM tier_transition t JOIN members m USING (customer_id)
WHERE t.policy_id = (SELECT id FROM tier_policy WHERE key = :policy) AND t.direction <> 'initial'
  AND t.at > m.joined_at AND t.at < :to
GROUP BY 1, 2, 3 ORDER BY 4 DESC, 1, 2
""")


def _satisfaction(row) -> dict:
    if row is None:
        return {"customers": 0, "nps_responses": 0, "nps": None, "csat_responses": 0, "csat_avg": None}
    nps = None
    if row.nps_responses:
        nps = round(100.0 * (row.promoters - row.detractors) / row.nps_responses, 2)
    # sum() of integers is numeric (a Decimal): both sides as float, or Python refuses float / Decimal
    csat = round(float(row.csat_total) / float(row.csat_responses), 3) if row.csat_responses else None
    return {
        "customers": row.customers,
        "nps_responses": row.nps_responses,
        "nps": nps,
        "csat_responses": int(row.csat_responses),
        "csat_avg": csat,
    }


async def community_metrics(session: AsyncSession, community: Community, from_: datetime, to: datetime) -> dict:
    policy = community.audience_policy_key or DEFAULT_TIER_POLICY
    params = {"community_id": community.id, "from_": from_, "to": to}
    counts = (await session.execute(_COUNTS, {**params, "active_from": to - timedelta(days=ACTIVE_DAYS)})).one()
    satisfaction = {row.grp: row for row in (await session.execute(_SATISFACTION, {**params, "policy": policy})).all()}
    migrations = (await session.execute(_MIGRATIONS, {**params, "policy": policy})).all()
    return {
        "community_key": community.key,
        "from": from_,
        "to": to,
        "members": counts.members,
        "joins": counts.joins,
        "leaves": counts.leaves,
        "active_members_30d": counts.active,
        "stickiness": round(counts.active / counts.members, 4) if counts.members else None,
        "tier_policy": policy,
        "members_satisfaction": _satisfaction(satisfaction.get("members")),
        "non_members_satisfaction": _satisfaction(satisfaction.get("non_members")),
        "tier_migrations": [dict(row._mapping) for row in migrations],
    }
