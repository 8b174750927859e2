"""Demo engagement data, set-based and seeded: four communities with members (invited, joined, declined, left) and
their activity, three activities (a past salon with attendance, a past appreciation event, a lecture ahead with
RSVPs and a waiting list) and referrals in every status. Audiences are compiled by the one compiler; who is invited
is a stable hash of the customer, the programme and the seed. Flushes, never commits; a second run adds nothing
to programmes that exist."""

import json
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.rules import AttributeCatalog, compile_condition, customer_features, parse_condition

COMMUNITIES = [
    (
        "young-families",
        "Young families",
        "Saving and insuring for a growing family",
        {"attr": "age", "op": "lt", "value": 35},
    ),
    (
        "retirees-wealth-club",
        "Retirees' wealth club",
        "Income in retirement, estate planning",
        {"all": [{"attr": "age", "op": "gte", "value": 60}, {"attr": "aum_avg_3m", "op": "gte", "value": 50000}]},
    ),
    (
        "small-business-owners",
        "Small-business owners",
        "Cash flow, credit lines, payroll",
        {"attr": "segment", "op": "eq", "value": "small_business"},
    ),
    (
        "card-travellers",
        "Card travellers",
        "Travel perks of our cards",
        {"attr": "held_categories", "op": "contains", "value": "card"},
    ),
]
# (key, name, kind, channel, capacity, starts in days (negative: past), audience, benefit codes)
ACTIVITIES = [
    (
        "salon_year_end",
        "Year-end investment salon",
        "salon",
        "branch",
        60,
        -30,
        {"attr": "aum_avg_3m", "op": "gte", "value": 50000},
        ["airport-lounge"],
    ),
    (
        "thank_you_evening",
        "Thank-you evening",
        "appreciation_event",
        "branch",
        120,
        -60,
        {"attr": "tenure_months", "op": "gte", "value": 60},
        [],
    ),
    (
        "pensions_explained",
        "Pensions explained",
        "lecture",
        "online",
        40,
        14,
        {"attr": "age", "op": "gte", "value": 40},
        [],
    ),
]

_ADMITTED = sa.table("demo_admitted", sa.column("programme"), sa.column("customer_id"), sa.column("u"))

_COMMUNITY_MEMBERS = text("""
WITH picked AS (
    SELECT c.id AS community_id, a.customer_id, a.u,
           now() - make_interval(days => 10 + a.u % 170) AS invited_at
    FROM demo_admitted a JOIN community c ON 'community:' || c.key = a.programme
    WHERE a.u < 300 AND NOT EXISTS (SELECT 1 FROM community_membership m WHERE m.community_id = c.id)
), shaped AS (
    SELECT *, CASE WHEN u < 150 THEN 'joined' WHEN u < 165 THEN 'left' WHEN u < 225 THEN 'declined' ELSE 'invited' END
           AS state
    FROM picked
), stored AS (
    INSERT INTO community_membership (community_id, customer_id, state, channel, invited_at, joined_at, ended_at)
    SELECT community_id, customer_id, state, 'mobile', invited_at,
           CASE WHEN state IN ('joined', 'left') THEN invited_at + interval '2 days' END,
           CASE WHEN state = 'left' THEN invited_at + interval '8 days' END
    FROM shaped ORDER BY community_id, customer_id
    RETURNING id, community_id, customer_id, state, invited_at, joined_at, ended_at
), moves AS (
    INSERT INTO community_membership_move (customer_id, membership_id, community_id, from_state, to_state, channel, at)
    SELECT customer_id, id, community_id, NULL, 'invited', 'mobile', invited_at FROM stored
    UNION ALL SELECT customer_id, id, community_id, 'invited', 'joined', 'mobile', joined_at
              FROM stored WHERE joined_at IS NOT NULL
    UNION ALL SELECT customer_id, id, community_id, 'joined', 'left', 'web', ended_at
              FROM stored WHERE ended_at IS NOT NULL
    UNION ALL SELECT customer_id, id, community_id, 'invited', 'declined', 'mobile', invited_at + interval '1 day'
              FROM stored WHERE state = 'declined'
)
INSERT INTO community_activity_event (community_id, customer_id, event_id, kind, occurred_at)
SELECT s.community_id, s.customer_id, 'demo-' || s.id || '-' || n,
       (ARRAY['post', 'reply', 'meeting_attended', 'share'])[1 + (s.customer_id + n) % 4],
       greatest(s.joined_at, now() - make_interval(days => ((1 + (s.customer_id * 7 + n * 11) % 40))::int))
FROM stored s CROSS JOIN generate_series(1, 1 + s.customer_id % 4) AS n
WHERE s.state = 'joined' AND s.customer_id % 5 < 2
""")

_PARTICIPANTS = text("""
WITH picked AS (
    SELECT ac.id AS activity_id, ac.capacity, ac.starts_at, ac.starts_at < now() AS past, a.customer_id, a.u,
           row_number() OVER (PARTITION BY ac.id ORDER BY a.u, a.customer_id) AS place
    FROM demo_admitted a JOIN activity ac ON 'activity:' || ac.key = a.programme
    WHERE a.u < 80 AND NOT EXISTS (SELECT 1 FROM activity_participation p WHERE p.activity_id = ac.id)
), shaped AS (
    SELECT *, CASE
        WHEN u % 10 >= 6 THEN CASE WHEN u % 10 >= 8 THEN 'declined' ELSE 'invited' END
        WHEN place > capacity THEN 'waitlisted'
        WHEN past THEN CASE WHEN u % 10 = 5 THEN 'no_show' ELSE 'attended' END
        ELSE 'accepted' END AS state
    FROM picked
)
INSERT INTO activity_participation (activity_id, customer_id, state, channel, invited_at, responded_at,
                                    waitlisted_at, attended_at)
SELECT activity_id, customer_id, state, 'mobile', starts_at - interval '20 days',
       CASE WHEN state <> 'invited' THEN starts_at - interval '18 days' + make_interval(secs => place::int) END,
       CASE WHEN state = 'waitlisted' THEN starts_at - interval '18 days' + make_interval(secs => place::int) END,
       CASE WHEN state = 'attended' THEN starts_at END
FROM shaped ORDER BY activity_id, customer_id
""")

# About 3% of customers referred someone: another demo customer, or a code still pending. Statuses by the hash.
_REFERRALS = text("""
WITH referrers AS (
    SELECT c.id, abs(hashtext(c.id || ':referral:' || :seed)) % 1000 AS u, max(c.id) OVER () AS top,
           min(c.id) OVER () AS bottom
    FROM customer c WHERE c.erased_at IS NULL
)
INSERT INTO referral (referrer_id, event_id, referee_id, referral_code, status, referred_at, onboarded_at,
                      activated_at)
SELECT r.id, 'demo-ref-' || r.id,
       CASE WHEN r.u % 10 < 7 THEN referee.id END,
       CASE WHEN r.u % 10 >= 7 THEN 'DEMO-' || r.id END,
       CASE WHEN r.u % 10 < 4 THEN 'active' WHEN r.u % 10 < 7 THEN 'onboarded' ELSE 'referred' END,
       now() - make_interval(days => 30 + r.u % 300),
       CASE WHEN r.u % 10 < 7 THEN now() - make_interval(days => 20 + r.u % 300) END,
       CASE WHEN r.u % 10 < 4 THEN now() - make_interval(days => 5 + r.u % 300) END
FROM referrers r
CROSS JOIN LATERAL (
    SELECT x.id FROM customer x
    WHERE x.id = r.bottom + (r.id - r.bottom + 1 + r.u) % (r.top - r.bottom + 1) AND x.id <> r.id
) referee
WHERE r.u < 30 AND r.top > r.bottom AND NOT EXISTS (SELECT 1 FROM referral WHERE event_id LIKE 'demo-ref-%')
ON CONFLICT (referrer_id, event_id) DO NOTHING
""")


async def load_demo_engagement(session: AsyncSession, seed: int = 7) -> dict[str, int]:
    """The demo programmes and who takes part in them, over the customers already loaded."""
    now = datetime.now(UTC)
    await session.execute(
        text(
            "CREATE TEMPORARY TABLE IF NOT EXISTS demo_admitted (programme text, customer_id bigint, u int) "
            "ON COMMIT DROP"
        )
    )
    catalog = AttributeCatalog()
    for key, name, goal, audience in COMMUNITIES:
        await session.execute(
            text(
                "INSERT INTO community (key, name, goal, owner_team, audience, state) "
                "VALUES (:key, :name, :goal, 'retail-engagement', CAST(:audience AS jsonb), 'open') "
                "ON CONFLICT (key) DO NOTHING"
            ),
            {"key": key, "name": name, "goal": goal, "audience": _json(audience)},
        )
        await _admit(session, f"community:{key}", audience, catalog, seed)
    for key, name, kind, channel, capacity, starts_in, audience, benefits in ACTIVITIES:
        starts = (now + timedelta(days=starts_in)).replace(minute=0, second=0, microsecond=0)
        await session.execute(
            text(
                "INSERT INTO activity (key, name, kind, owner_team, audience, channel, capacity, starts_at, ends_at, "
                "benefit_codes) VALUES (:key, :name, :kind, 'wealth-engagement', CAST(:audience AS jsonb), :channel, "
                ":capacity, :starts, :ends, :benefits) ON CONFLICT (key) DO NOTHING"
            ),
            {
                "key": key,
                "name": name,
                "kind": kind,
                "audience": _json(audience),
                "channel": channel,
                "capacity": capacity,
                "starts": starts,
                "ends": starts + timedelta(hours=2),
                "benefits": benefits,
            },
        )
        await _admit(session, f"activity:{key}", audience, catalog, seed)
    await session.execute(_COMMUNITY_MEMBERS)
    await session.execute(_PARTICIPANTS)
    await session.execute(_REFERRALS, {"seed": str(seed)})
    counts = {}
    for table in ("community_membership", "community_activity_event", "activity_participation", "referral"):
        counts[table] = await session.scalar(text(f"SELECT count(*) FROM {table}"))
    await session.execute(text("DROP TABLE demo_admitted"))
    return counts


async def _admit(session: AsyncSession, programme: str, audience: dict, catalog: AttributeCatalog, seed: int) -> None:
    """demo_admitted gets the consenting customers the audience admits, each with a stable draw u in 0..999."""
    features = customer_features
    admitted = compile_condition(parse_condition(audience), catalog, features)
    draw = sa.func.abs(sa.func.hashtext(sa.cast(features.c.customer_id, sa.Text) + f":{programme}:{seed}")) % 1000
    await session.execute(
        sa.insert(_ADMITTED).from_select(
            ["programme", "customer_id", "u"],
            sa.select(sa.literal(programme), features.c.customer_id, draw).where(
                admitted, features.c.marketing_consent
            ),
        )
    )


def _json(value) -> str:
    return json.dumps(value)
