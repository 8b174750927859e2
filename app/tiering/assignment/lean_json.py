"""The lean bulk read's document written by Postgres: the CustomerTiersBulk JSON of many customers' tiers, not
explained, as one text value the route sends as it is (no row decoded, no dict built in the process).

The statement writes exactly the bytes the schema's serializer writes for the same tiers (`reads.py`'s Python path,
which stays the one for explained reads and single customers; tests/tiering/test_lean_json.py holds the two equal
byte for byte): keys in field order, no spaces, strings escaped by `to_json` (the same escapes as the serializer's),
timestamps in UTC as `2026-03-01T02:00:11Z` or with six digits of fraction when there is one, labels picked from
each version's stored `labels` along the language's truncations then the default's (app/core/i18n.py `pick`), else
its `label`, else the tier code."""

from app.core.i18n import _truncations


def _timestamp(column: str) -> str:
    """The serializer's JSON of a timestamptz column (not null): UTC, `Z`, the fraction only when not zero."""
    utc = f"({column} AT TIME ZONE 'UTC')"
    return (
        f"""'"' || to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS') """
        f"""|| CASE WHEN date_part('microseconds', {utc})::bigint % 1000000 <> 0 """
        f"""THEN to_char({utc}, '.US') ELSE '' END || 'Z"'"""
    )


def _string(expression: str) -> str:
    return f"coalesce(to_json(({expression})::text)::text, 'null')"


# One tier's document (CustomerTier, explanation null) from the columns of `x` (the LATERAL below).
_TIER = f"""
'{{"policy_key":' || {_string("x.key")} || ',"policy_version":' || x.version::text
|| ',"tier":' || {_string("x.tier")}
|| ',"label":' || to_json(coalesce((SELECT by_version FROM labels) -> (x.version_id::text) ->> x.tier, x.tier))::text
|| ',"rank":' || x.rank::text
|| ',"since":' || {_timestamp("x.since")} || ',"evaluated_at":' || {_timestamp("x.evaluated_at")}
|| ',"qualified_tier":' || {_string("x.qualified_code")}
|| CASE WHEN x.lower_since IS NULL THEN ',"at_risk":false,"downgrade_to":null,"downgrade_on":null'
        ELSE ',"at_risk":true,"downgrade_to":' || {_string("x.qualified_code")} || ',"downgrade_on":"'
             || to_char(((x.lower_since AT TIME ZONE 'UTC') + make_interval(days => x.grace_days))::date,
                        'YYYY-MM-DD') || '"' END
|| ',"override":' || CASE WHEN x.override_applies
       THEN '{{"tier":' || {_string("x.override_code")} || ',"reason":' || {_string("x.override_reason")}
            || ',"actor":' || {_string("x.override_actor")} || ',"expires_at":'
            || coalesce({_timestamp("x.override_expires_at")}, 'null') || '}}'
       ELSE 'null' END
|| ',"explanation":null}}'
"""

# Every version's labels in the language asked ($3: the candidate tags, lowercase, in order), as
# {version id: {tier code: label}}: the versions table is small (a policy's edits), read once per call.
# The customers as in reads._CUSTOMERS_TIERS (index-driven per id; the aggregate keeps each LATERAL apart).
CUSTOMERS_TIERS_LEAN_JSON = f"""
WITH labels AS MATERIALIZED (
    SELECT coalesce(jsonb_object_agg(v.id::text, l.labels), '{{}}') AS by_version
    FROM tier_policy_version v
    CROSS JOIN LATERAL (
        SELECT jsonb_object_agg(e->>'code', coalesce(nullif((
            SELECT t.value FROM jsonb_each_text(CASE jsonb_typeof(e->'labels') WHEN 'object' THEN e->'labels' END) t
            JOIN unnest($3::text[]) WITH ORDINALITY AS w(tag, n) ON lower(t.key) = w.tag
            ORDER BY w.n LIMIT 1), ''), e->>'label', e->>'code')) AS labels
        FROM jsonb_array_elements(v.tiers) e
    ) l
    WHERE l.labels IS NOT NULL
)
SELECT '{{"items":[' || string_agg(
    '{{"customer_id":' || to_json(r.external_id)::text || ',"found":' || (c.id IS NOT NULL)::text
    || ',"tiers":[' || coalesce(t.tiers, '') || ']}}', ',' ORDER BY r.n) || ']}}'
FROM unnest($1::text[]) WITH ORDINALITY AS r(external_id, n)
LEFT JOIN LATERAL (
    SELECT c.id FROM customer c WHERE c.external_id = r.external_id AND c.erased_at IS NULL OFFSET 0
) c ON true
LEFT JOIN LATERAL (
    SELECT string_agg({_TIER}, ',' ORDER BY x.key) AS tiers
    FROM (
        SELECT p.key, v.version, a.version_id, v.downgrade_grace_days AS grace_days, effective_tier(a) AS tier,
               effective_rank(a) AS rank, a.since, a.evaluated_at, a.qualified_code, a.lower_since,
               tier_override_applies(a) AS override_applies, a.override_code, a.override_reason, a.override_actor,
               a.override_expires_at
        FROM tier_assignment a
        JOIN tier_policy p ON p.id = a.policy_id AND ($2::text[] IS NULL OR p.key = ANY($2::text[]))
        JOIN tier_policy_version v ON v.id = a.version_id
        WHERE a.customer_id = c.id
        OFFSET 0
    ) x
) t ON true
"""


def language_candidates(language: str, default_language: str) -> list[str]:
    """The lowercase tags a label is looked up by, in order (app/core/i18n.py `pick`)."""
    return [tag for wanted in (language, default_language) for tag in _truncations(wanted)]


async def customers_tiers_lean_json(
    connection, external_ids: list[str], policy_keys: list[str] | None, language: str, default_language: str
) -> bytes:
    """The CustomerTiersBulk document (explain false) of these customers (distinct ids, in order), written by
    Postgres in one statement on `connection` (a driver connection)."""
    document = await connection.fetchval(
        CUSTOMERS_TIERS_LEAN_JSON, external_ids, policy_keys or None, language_candidates(language, default_language)
    )
    return document.encode()
