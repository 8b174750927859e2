"""The lean bulk read's document written by Postgres: the CustomerTiersBulk JSON of many customers' tiers, not
explained, as one text value the route sends as it is (no row decoded, no dict built in the process).

The statement writes exactly the bytes the schema's serializer writes for the same tiers (`reads.py`'s Python path,
which stays the one for explained reads and single customers; tests/tiering/test_lean_json.py holds the two equal
byte for byte): keys in field order, no spaces, strings escaped by `to_json` (the same escapes as the serializer's),
timestamps in UTC as `2026-03-01T02:00:11Z` or with six digits of fraction when there is one, labels picked from
each version's stored `labels` along the language's truncations then the default's (app/core/i18n.py `pick`), else
its `label`, else the tier code.

Most of each tier's text is stored with its assignment (`lean_tail`, `lean_override`, written by the trigger
tier_assignment_lean on every write that leaves `lean_tail` to it: migrations/versions/2026-12-06_tier_assignment_
lean_text.py, which formats the same way; the tier assignment statement writes `lean_tail` itself with the function the
trigger calls, tier_assignment_lean_tail: ..._lean_text_by_writer.py). What the statement writes is what can change
while the row does not: each tier's head (policy key, version, tier and label), once per version, tier code and language
at each call; then per row the rank and the override, or null, as of now (an override expires with time)."""

from app.core.i18n import _truncations

# One tier's document (CustomerTier, explanation null) from the columns of `x` (the LATERAL below): the head of
# its version and tier (else, for a code the version does not list, built from the version's prefix with the code as
# label), the rank, the stored tail, then the override (stored, closing the document) or null.
_TIER = """
coalesce(x.heads ->> x.tier, (x.heads ->> '') || to_json(x.tier::text)::text || ',"label":'
         || to_json(x.tier::text)::text || ',"rank":')
|| x.rank::text || x.lean_tail
|| CASE WHEN x.override_applies THEN x.lean_override ELSE 'null,"explanation":null}' END
"""

# Every version's heads in the language asked ($3: the candidate tags, lowercase, in order), as {version id: {tier
# code: `{"policy_key":...,"policy_version":N,"tier":...,"label":...,"rank":`, "": the same up to "tier":}}: the
# versions table is small (a policy's edits), read once per call.
# The customers as in reads._CUSTOMERS_TIERS (index-driven per id; the aggregate keeps each LATERAL apart).
CUSTOMERS_TIERS_LEAN_JSON = f"""
WITH labels AS MATERIALIZED (
    SELECT coalesce(jsonb_object_agg(v.id::text, l.heads), '{{}}') AS by_version
    FROM tier_policy_version v
    JOIN tier_policy p ON p.id = v.policy_id
    CROSS JOIN LATERAL (
        SELECT '{{"policy_key":' || to_json(p.key::text)::text || ',"policy_version":' || v.version::text
               || ',"tier":' AS prefix
    ) h
    CROSS JOIN LATERAL (
        SELECT jsonb_build_object('', h.prefix) || coalesce(jsonb_object_agg(e->>'code',
            h.prefix || to_json(e->>'code')::text || ',"label":' || to_json(coalesce(nullif((
                SELECT t.value FROM jsonb_each_text(CASE jsonb_typeof(e->'labels') WHEN 'object' THEN e->'labels' END) t
                JOIN unnest($3::text[]) WITH ORDINALITY AS w(tag, n) ON lower(t.key) = w.tag
                ORDER BY w.n LIMIT 1), ''), e->>'label', e->>'code'))::text || ',"rank":'
        ) FILTER (WHERE e->>'code' IS NOT NULL), '{{}}') AS heads
        FROM jsonb_array_elements(v.tiers) e
    ) l
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
        SELECT p.key, (SELECT by_version FROM labels) -> (a.version_id::text) AS heads, effective_tier(a) AS tier,
               effective_rank(a) AS rank, tier_override_applies(a) AS override_applies, a.lean_tail,
               a.lean_override
        FROM tier_assignment a
        JOIN tier_policy p ON p.id = a.policy_id AND ($2::text[] IS NULL OR p.key = ANY($2::text[]))
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
