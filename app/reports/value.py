"""Retention and value reports: retention per tier (from the tier change feed), stickiness (from login activity),
contribution per tier and its monthly trend, and per relationship manager: contacts, tasks done on time, their
portfolio's retention, net tier migration, stickiness and contribution. Each is one set-based statement."""

from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import PageRequest
from app.reports.intervals import wilson_interval
from app.reports.service import policy_and_labels

# A customer's tier under a policy at a moment: the target of their latest transition before it, ranked as in the
# version that made it. `{at}` is the moment's parameter.
_TIER_AT = """
    SELECT DISTINCT ON (t.customer_id) t.customer_id, t.to_code AS tier, r.rank
    FROM tier_transition t
    LEFT JOIN ranks r ON r.version_id = t.version_id AND r.code = t.to_code
    WHERE t.policy_id = :policy_id AND t.at < {at}
    ORDER BY t.customer_id, t.at DESC, t.id DESC"""

_RANKS = """
    SELECT v.id AS version_id, x ->> 'code' AS code, (x ->> 'rank')::int AS rank
    FROM tier_policy_version v, jsonb_array_elements(v.tiers) x
    WHERE v.policy_id = :policy_id"""

# Still a customer at the end: not erased before it, and holding a tier then.
_OUTCOMES = """
    count(*) AS customers,
    count(*) FILTER (WHERE kept AND e.rank >= s.rank) AS retained,
    count(*) FILTER (WHERE kept AND e.rank > s.rank) AS upgraded,
    count(*) FILTER (WHERE kept AND e.rank < s.rank) AS downgraded,
    count(*) FILTER (WHERE NOT kept) AS lost"""
_KEPT = "CROSS JOIN LATERAL (SELECT (c.erased_at IS NULL OR c.erased_at >= :to) AND e.tier IS NOT NULL AS kept) k"

_RETENTION = text(f"""
WITH ranks AS ({_RANKS}),
at_start AS ({_TIER_AT.format(at=":from_")}),
at_end AS ({_TIER_AT.format(at=":to")})
SELECT s.tier, max(s.rank) AS rank, {_OUTCOMES}
FROM at_start s
JOIN customer c ON c.id = s.customer_id
LEFT JOIN at_end e ON e.customer_id = s.customer_id
{_KEPT}
GROUP BY s.tier
ORDER BY max(s.rank) DESC NULLS LAST, s.tier
""")


def _rate(successes: int, trials: int) -> dict[str, Any]:
    interval = wilson_interval(successes, trials)
    return {
        "rate": round(successes / trials, 4) if trials else None,
        "interval": {"low": interval[0], "high": interval[1]} if interval else None,
    }


def _outcomes(row: Any) -> dict[str, Any]:
    return {
        "customers": row.customers,
        "retained": row.retained,
        "upgraded": row.upgraded,
        "downgraded": row.downgraded,
        "lost": row.lost,
        "retention": _rate(row.retained, row.customers),
    }


async def retention(session: AsyncSession, policy: str, from_: datetime, to: datetime) -> dict[str, Any]:
    """Per tier held at `from`: how many of its customers were still customers at `to` in the same tier or above."""
    policy_id, labels = await policy_and_labels(session, policy)
    rows = (await session.execute(_RETENTION, {"policy_id": policy_id, "from_": from_, "to": to})).all()
    tiers = [{"tier": r.tier, "label": labels.get(r.tier), "rank": r.rank, **_outcomes(r)} for r in rows]
    customers, retained = sum(r.customers for r in rows), sum(r.retained for r in rows)
    return {
        "policy_key": policy,
        "from": from_,
        "to": to,
        "customers": customers,
        "retained": retained,
        "retention": _rate(retained, customers),
        "tiers": tiers,
    }


# ---- stickiness ---------------------------------------------------------------------------------------------

# Active: logged in (a login event, rolled up per day) on one of the 30 days ending on `:on`. `{customer}` is the
# customer's id column.
_ACTIVE_30D = """EXISTS (
           SELECT 1 FROM customer_activity_daily ad
           WHERE ad.customer_id = {customer} AND ad.logins > 0
             AND ad.day > CAST(:on AS date) - 30 AND ad.day <= CAST(:on AS date)
       )"""

_STICKINESS = text(f"""
SELECT effective_tier(a) AS tier, max(effective_rank(a)) AS rank, count(*) AS customers,
       count(*) FILTER (WHERE {_ACTIVE_30D.format(customer="a.customer_id")}) AS active_30d
FROM tier_assignment a
JOIN customer c ON c.id = a.customer_id AND c.erased_at IS NULL
WHERE a.policy_id = :policy_id
GROUP BY 1
ORDER BY 2 DESC, 1
""")


def _stickiness(active: int, customers: int) -> dict[str, Any]:
    return {
        "customers": customers,
        "active_30d": active,
        "stickiness": round(active / customers, 4) if customers else None,
    }


async def stickiness(session: AsyncSession, policy: str, to: datetime) -> dict[str, Any]:
    """Per effective tier: customers, those who logged in on one of the 30 days ending on `to`'s day, the share."""
    policy_id, labels = await policy_and_labels(session, policy)
    rows = (await session.execute(_STICKINESS, {"policy_id": policy_id, "on": to.date()})).all()
    return {
        "policy_key": policy,
        "on": to.date(),
        **_stickiness(sum(r.active_30d for r in rows), sum(r.customers for r in rows)),
        "tiers": [
            {"tier": r.tier, "label": labels.get(r.tier), "rank": r.rank, **_stickiness(r.active_30d, r.customers)}
            for r in rows
        ],
    }


# ---- contribution -------------------------------------------------------------------------------------------

# Now: the built-in attribute (the bank's figure or derived from balances and margins), per effective tier.
_CONTRIBUTION_SUM = "coalesce(sum(f.contribution_monthly), 0) AS contribution_monthly"
_CONTRIBUTION = text(f"""
SELECT effective_tier(a) AS tier, max(effective_rank(a)) AS rank, count(*) AS customers, {_CONTRIBUTION_SUM}
FROM tier_assignment a
JOIN customer_features f ON f.customer_id = a.customer_id
WHERE a.policy_id = :policy_id
GROUP BY 1
ORDER BY 2 DESC, 1
""")

# By month: each product's last balance of each month in [from, to) times its margin now, per effective tier now.
_CONTRIBUTION_TREND = text("""
WITH balance AS (
    SELECT DISTINCT ON (hb.customer_id, hb.product_code, date_trunc('month', hb.as_of))
           hb.customer_id, hb.product_code, hb.balance, date_trunc('month', hb.as_of)::date AS month
    FROM holding_balance hb
    WHERE hb.as_of >= :from_ AND hb.as_of < :to
    ORDER BY hb.customer_id, hb.product_code, date_trunc('month', hb.as_of), hb.as_of DESC
)
SELECT b.month, effective_tier(a) AS tier, count(DISTINCT b.customer_id) AS customers,
       round(sum(abs(b.balance) * mg.margin_rate / 12 + mg.monthly_fee), 2) AS contribution
FROM balance b
JOIN contribution_margin mg ON mg.product_code = b.product_code
JOIN tier_assignment a ON a.customer_id = b.customer_id AND a.policy_id = :policy_id
JOIN customer c ON c.id = b.customer_id AND c.erased_at IS NULL
GROUP BY b.month, 2
ORDER BY b.month, 2
""")


def _contribution(total: Decimal, customers: int) -> dict[str, Any]:
    return {
        "customers": customers,
        "contribution_monthly": total,
        "per_customer": round(total / customers, 2) if customers else None,
    }


async def contribution(session: AsyncSession, policy: str, from_: datetime, to: datetime) -> dict[str, Any]:
    """Monthly contribution per effective tier now (total and per customer), and the derived contribution of each
    month in [from, to) by tier."""
    policy_id, labels = await policy_and_labels(session, policy)
    now = (await session.execute(_CONTRIBUTION, {"policy_id": policy_id})).all()
    trend = (await session.execute(_CONTRIBUTION_TREND, {"policy_id": policy_id, "from_": from_, "to": to})).all()
    months: dict[Any, dict[str, Any]] = {}
    for r in trend:
        month = months.setdefault(r.month, {"month": r.month, "contribution": Decimal(0), "tiers": []})
        month["contribution"] += r.contribution
        month["tiers"].append({"tier": r.tier, "customers": r.customers, "contribution": r.contribution})
    return {
        "policy_key": policy,
        "from": from_,
        "to": to,
        "customers": sum(r.customers for r in now),
        "contribution_monthly": sum((r.contribution_monthly for r in now), Decimal(0)),
        "tiers": [
            {
                "tier": r.tier,
                "label": labels.get(r.tier),
                "rank": r.rank,
                **_contribution(r.contribution_monthly, r.customers),
            }
            for r in now
        ],
        "trend": list(months.values()),
    }


# ---- per manager --------------------------------------------------------------------------------------------

# A manager's portfolio at `from`: the customers whose latest assignment change before it gave them the manager.
_MANAGERS = text(f"""
WITH ranks AS ({_RANKS}),
at_start AS ({_TIER_AT.format(at=":from_")}),
at_end AS ({_TIER_AT.format(at=":to")}),
page AS (
    SELECT m.id, m.manager_id, m.name, m.team FROM relationship_manager m
    WHERE m.id > :after AND m.policy_key = :policy_key AND (CAST(:team AS text) IS NULL OR m.team = :team)
    ORDER BY m.id LIMIT :limit
),
portfolio AS (
    SELECT DISTINCT ON (h.customer_id) h.customer_id, h.manager_id
    FROM manager_assignment_change h
    WHERE h.at < :from_
    ORDER BY h.customer_id, h.at DESC, h.id DESC
),
retention AS (
    SELECT p.manager_id, {_OUTCOMES}
    FROM portfolio p
    JOIN page ON page.id = p.manager_id
    JOIN at_start s ON s.customer_id = p.customer_id
    JOIN customer c ON c.id = p.customer_id
    LEFT JOIN at_end e ON e.customer_id = p.customer_id
    {_KEPT}
    GROUP BY p.manager_id
),
migration AS (
    SELECT p.manager_id, count(*) FILTER (WHERE t.direction = 'upgrade') AS upgrades,
           count(*) FILTER (WHERE t.direction = 'downgrade') AS downgrades
    FROM portfolio p
    JOIN page ON page.id = p.manager_id
    JOIN tier_transition t ON t.customer_id = p.customer_id AND t.policy_id = :policy_id
    WHERE t.at >= :from_ AND t.at < :to
    GROUP BY p.manager_id
),
contacts AS (
    SELECT k.manager_id, count(*) AS contacts
    FROM manager_contact k JOIN page ON page.id = k.manager_id
    WHERE k.contacted_at >= :from_ AND k.contacted_at < :to
    GROUP BY k.manager_id
),
tasks AS (
    -- tasks closed done in the range by the manager's customers' current manager
    SELECT ma.manager_id, count(*) AS done,
           count(*) FILTER (WHERE (t.closed_at AT TIME ZONE 'UTC')::date <= t.due_on) AS done_on_time
    FROM manager_task t
    JOIN manager_assignment ma ON ma.customer_id = t.customer_id
    JOIN page ON page.id = ma.manager_id
    WHERE t.state = 'done' AND t.closed_at >= :from_ AND t.closed_at < :to
    GROUP BY ma.manager_id
),
load AS (
    -- the portfolio now (erased customers leave it): its stickiness and contribution as in those reports
    SELECT ma.manager_id, count(*) AS customers,
           count(*) FILTER (WHERE {_ACTIVE_30D.format(customer="ma.customer_id")}) AS active_30d,
           {_CONTRIBUTION_SUM}
    FROM manager_assignment ma JOIN page ON page.id = ma.manager_id
    LEFT JOIN customer_features f ON f.customer_id = ma.customer_id
    GROUP BY ma.manager_id
)
SELECT page.id, page.manager_id, page.name, page.team, coalesce(load.customers, 0) AS portfolio,
       coalesce(load.active_30d, 0) AS active_30d, coalesce(load.contribution_monthly, 0) AS contribution_monthly,
       coalesce(contacts.contacts, 0) AS contacts, coalesce(tasks.done, 0) AS tasks_done,
       coalesce(tasks.done_on_time, 0) AS tasks_done_on_time,
       coalesce(r.customers, 0) AS customers, coalesce(r.retained, 0) AS retained,
       coalesce(r.upgraded, 0) AS upgraded, coalesce(r.downgraded, 0) AS downgraded, coalesce(r.lost, 0) AS lost,
       coalesce(migration.upgrades, 0) AS upgrades, coalesce(migration.downgrades, 0) AS downgrades
FROM page
LEFT JOIN load ON load.manager_id = page.id
LEFT JOIN contacts ON contacts.manager_id = page.id
LEFT JOIN tasks ON tasks.manager_id = page.id
LEFT JOIN retention r ON r.manager_id = page.id
LEFT JOIN migration ON migration.manager_id = page.id
ORDER BY page.id
""")


async def managers(
    session: AsyncSession, policy: str, from_: datetime, to: datetime, team: str | None, page: PageRequest
) -> list[Any]:
    """Per manager of the policy (a page of them, by id): portfolio now; contacts made and tasks done (on time: by
    their due date) in the range; the retention of the portfolio they had at `from`; its tier moves in the range;
    the stickiness (30 days ending on `to`'s day) and monthly contribution of the portfolio now."""
    policy_id, _ = await policy_and_labels(session, policy)
    params = {
        "policy_id": policy_id,
        "policy_key": policy,
        "from_": from_,
        "to": to,
        "on": (to - timedelta(microseconds=1)).date(),
        "team": team,
        "after": page.after or 0,
        "limit": page.limit + 1,
    }
    return [
        {
            "id": r.id,
            "manager_id": r.manager_id,
            "name": r.name,
            "team": r.team,
            "portfolio": r.portfolio,
            "contacts": r.contacts,
            "tasks_done": r.tasks_done,
            "tasks_done_on_time": r.tasks_done_on_time,
            "on_time": _rate(r.tasks_done_on_time, r.tasks_done),
            "portfolio_retention": _outcomes(r),
            "upgrades": r.upgrades,
            "downgrades": r.downgrades,
            "net_migration": r.upgrades - r.downgrades,
            "portfolio_stickiness": _stickiness(r.active_30d, r.portfolio),
            "portfolio_contribution": _contribution(r.contribution_monthly, r.portfolio),
        }
        for r in (await session.execute(_MANAGERS, params)).all()
    ]
