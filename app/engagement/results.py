"""Activity results: invited, accepted, attended, satisfaction from the surveys tied to the activity (touchpoint
`activity_<key>`), and products taken within N days after attending against a matched group that was not invited.

The not-invited group: customers the activity's audience admits (its condition now, compiled by the one compiler
over customer_features, and its tiers), who were not invited to it, onboarded before it started. Matching is exact
by stratum (segment, tier under the primary policy, age decade); the group's rate is each stratum's rate weighted
by the stratum's share of the attendees (attendees in a stratum with no such customer are left out of the
comparison and counted). A product taken: a holding opened in the N days after the day attended (for the group,
after the activity's first day). The uplift is the difference of the two rates with a 95% normal-approximation
interval (the attendees' binomial variance plus the weighted strata variances), as the recommendation funnel
reports its holdout uplift (app/reports/intervals.py)."""

import math
from collections import defaultdict
from datetime import timedelta

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.customers.models import Customer, Holding
from app.engagement.metrics import _satisfaction
from app.engagement.models import Activity, ActivityParticipation
from app.reports.intervals import Z_95
from app.rules import compile_condition, customer_features, load_catalog, parse_condition

MATCHING = "exact by segment, tier under the primary policy and age decade; the group reweighted to the attendees"

_COUNTS = text("""
SELECT count(*) AS invited,
       count(*) FILTER (WHERE state IN ('accepted', 'attended', 'no_show')) AS accepted,
       count(*) FILTER (WHERE state = 'waitlisted') AS waitlisted,
       count(*) FILTER (WHERE state = 'declined') AS declined,
       count(*) FILTER (WHERE state = 'attended') AS attended,
       count(*) FILTER (WHERE state = 'no_show') AS no_show
FROM activity_participation WHERE activity_id = :activity_id
""")

_SATISFACTION = text("""
WITH answers AS (
    SELECT customer_id, kind, score,
           row_number() OVER (PARTITION BY customer_id, kind ORDER BY occurred_at DESC, id DESC) AS latest
    FROM survey_response WHERE touchpoint = :touchpoint
)
SELECT count(DISTINCT customer_id) AS customers,
       count(*) FILTER (WHERE kind = 'nps' AND latest = 1) AS nps_responses,
       count(*) FILTER (WHERE kind = 'nps' AND latest = 1 AND score >= 9) AS promoters,
       count(*) FILTER (WHERE kind = 'nps' AND latest = 1 AND score <= 6) AS detractors,
       count(*) FILTER (WHERE kind = 'csat') AS csat_responses,
       sum(score) FILTER (WHERE kind = 'csat') AS csat_total
FROM answers
""")


def _stratum(features):
    tier = (
        sa.select(sa.text("effective_tier(a)"))
        .select_from(sa.text("tier_assignment a JOIN tier_policy p ON p.id = a.policy_id"))
        .where(sa.text("a.customer_id = customer_features.customer_id AND p.key = :stratum_policy"))
        .scalar_subquery()
    )
    return (
        features.c.segment.label("segment"),
        sa.func.coalesce(tier, "-").label("tier"),
        sa.func.coalesce(features.c.age / 10, -1).label("age_decade"),
    )


def _took(customer_id, after_day, days: int):
    return sa.exists().where(
        Holding.customer_id == customer_id,
        Holding.opened_at > after_day,
        Holding.opened_at <= after_day + sa.literal(timedelta(days=days)),
    )


async def activity_results(session: AsyncSession, activity: Activity, days: int, primary_policy: str) -> dict:
    counts = (await session.execute(_COUNTS, {"activity_id": activity.id})).one()
    satisfaction = (await session.execute(_SATISFACTION, {"touchpoint": f"activity_{activity.key}"})).one()
    features = customer_features
    policy = {"stratum_policy": primary_policy}

    attended_day = sa.cast(ActivityParticipation.attended_at, sa.Date)
    attendees = (
        sa.select(
            *_stratum(features),
            sa.func.count(),
            sa.func.count().filter(_took(features.c.customer_id, attended_day, days)),
        )
        .select_from(features)
        .join(ActivityParticipation, ActivityParticipation.customer_id == features.c.customer_id)
        .where(ActivityParticipation.activity_id == activity.id, ActivityParticipation.state == "attended")
        .group_by(sa.literal_column("1"), sa.literal_column("2"), sa.literal_column("3"))
    )
    admitted = compile_condition(parse_condition(activity.audience), await load_catalog(session), features)
    start_day = activity.starts_at.date()
    control = (
        sa.select(
            *_stratum(features),
            sa.func.count(),
            sa.func.count().filter(_took(features.c.customer_id, sa.literal(start_day), days)),
        )
        .select_from(features)
        .join(Customer, Customer.id == features.c.customer_id)
        .where(
            admitted,
            Customer.erased_at.is_(None),
            Customer.onboarded_at < activity.starts_at,
            ~sa.exists().where(
                ActivityParticipation.activity_id == activity.id,
                ActivityParticipation.customer_id == features.c.customer_id,
            ),
        )
        .group_by(sa.literal_column("1"), sa.literal_column("2"), sa.literal_column("3"))
    )
    if activity.audience_policy_key:
        in_tiers = sa.exists(
            sa.select(sa.literal(1))
            .select_from(sa.text("tier_assignment a JOIN tier_policy p ON p.id = a.policy_id"))
            .where(
                sa.text(
                    "a.customer_id = customer_features.customer_id AND p.key = :audience_policy "
                    "AND effective_tier(a) = ANY(:audience_tiers)"
                )
            )
        )
        control = control.where(in_tiers)
        policy |= {"audience_policy": activity.audience_policy_key, "audience_tiers": activity.audience_tiers}
    treated = {tuple(r[:3]): (r[3], r[4]) for r in (await session.execute(attendees, policy)).all()}
    group = {tuple(r[:3]): (r[3], r[4]) for r in (await session.execute(control, policy)).all()}
    return {
        "activity_key": activity.key,
        **dict(counts._mapping),
        "satisfaction": _satisfaction(satisfaction),
        "days": days,
        "matching": MATCHING,
        **compare(treated, group),
    }


def compare(treated: dict[tuple, tuple[int, int]], group: dict[tuple, tuple[int, int]]) -> dict:
    """Attendees against the stratified, reweighted not-invited group: rates, and the difference with its 95%
    interval (None when either side is empty)."""
    matched = [s for s in treated if s in group and group[s][0] > 0]
    n_t = sum(treated[s][0] for s in matched)
    x_t = sum(treated[s][1] for s in matched)
    out = {
        "attendees_compared": n_t,
        "attendees_taking_products": x_t,
        "attendee_rate": x_t / n_t if n_t else None,
        "control_customers": sum(group[s][0] for s in matched),
        "control_rate": None,
        "uplift": None,
    }
    if not n_t:
        return out
    weights = defaultdict(float, {s: treated[s][0] / n_t for s in matched})
    p_t = x_t / n_t
    p_c = sum(weights[s] * group[s][1] / group[s][0] for s in matched)
    variance = p_t * (1 - p_t) / n_t + sum(
        weights[s] ** 2 * (group[s][1] / group[s][0]) * (1 - group[s][1] / group[s][0]) / group[s][0] for s in matched
    )
    half = Z_95 * math.sqrt(variance)
    out["control_rate"] = p_c
    out["uplift"] = {"difference": p_t - p_c, "interval": {"low": p_t - p_c - half, "high": p_t - p_c + half}}
    return out
