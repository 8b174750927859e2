"""Serving's features (the refresh's): one month's rows of a chunk of customers, the same features as training's
(app/recommendations/learned/features.py) in a statement that reads only what serving needs, and given as one
packed row a chunk (a few values instead of a record per customer: the refresh decodes them on its event loop)."""

import functools
from collections.abc import Sequence
from datetime import date

import numpy as np

from app.recommendations.learned.features import (
    _ATTRIBUTES,
    _NUMBERS,
    LOOKBACK_MONTHS,
    MAX_PRODUCTS,
    FeatureRows,
    FeatureSpec,
    _chunks,
    _fetch,
    _masks,
    add_months,
)

# Serving's one month ($1, its first day): the same columns, without what only training reads (the month after,
# the accepted offers: no label, `holdings[1]` 0). A month's end holdings are the products of the customer's last
# report before the next month's first day, among the reports from $6 on: one aggregate per customer and month back
# (the greatest (day, products) pair, an AUM-only day's products 0 below a holdings report's of the same day)
# instead of training's months series and windows. $2-$5 as above, $6 the history's start, $7 today, then the chunk.
_CURRENT = """
WITH report AS (  -- a product's bit: its position in $2 (none for a product the model does not read)
    SELECT b.customer_id, b.as_of AS day,
           coalesce(bit_or(1::bigint << (array_position($2::text[], b.product_code::text) - 1)), 0) AS products
    FROM holding_balance b
    WHERE {chunk_b} AND b.as_of >= $6::date AND b.as_of < ($1::date + interval '1 month')::date
    GROUP BY 1, 2
    UNION ALL
    SELECT u.customer_id, u.day, 0 FROM customer_aum_daily u
    WHERE {chunk_u} AND u.day >= $6::date AND u.day < ($1::date + interval '1 month')::date
), holdings AS (
    SELECT customer_id, ARRAY[0, {ends}] AS products FROM report GROUP BY 1
), activity AS (  -- the 30 and 90 days before the month's end (or today's end, in the current month)
    SELECT d.customer_id,
           coalesce(sum(d.txn_count) FILTER (WHERE d.day >= u.until - 30), 0)::float8 AS txn_count_30d,
           coalesce(sum(d.txn_amount) FILTER (WHERE d.day >= u.until - 30), 0)::float8 AS txn_amount_30d,
           coalesce(sum(d.logins) FILTER (WHERE d.day >= u.until - 30), 0)::float8 AS logins_30d,
           sum(d.txn_count)::float8 AS txn_count_90d
    FROM customer_activity_daily d
    CROSS JOIN (SELECT least(($1::date + interval '1 month')::date, $7::date + 1) AS until) u
    WHERE {chunk_d} AND d.day >= u.until - 90 AND d.day < u.until
    GROUP BY 1
), tier AS (
    SELECT a.customer_id, effective_tier(a) AS code
    FROM tier_assignment a JOIN tier_policy p ON p.id = a.policy_id
    WHERE {chunk_a} AND p.key = $5::text
)
SELECT c.id AS customer_id, $1::date AS month,
       coalesce(h.products, '{{0,0,0,0,0,0,0}}') AS holdings, '{{}}'::int[] AS accepted,
       date_part('year', age(u.until, c.birth_date))::float8 AS age,
       (date_part('year', age(u.until, c.onboarded_at)) * 12 + date_part('month', age(u.until, c.onboarded_at)))
           ::float8 AS tenure_months,
       coalesce(a.txn_count_30d, 0) AS txn_count_30d, coalesce(a.txn_amount_30d, 0) AS txn_amount_30d,
       coalesce(a.logins_30d, 0) AS logins_30d, coalesce(a.txn_count_90d, 0) AS txn_count_90d,
       c.segment, tr.code AS tier,
       {attributes}
FROM customer c
CROSS JOIN (SELECT least(($1::date + interval '1 month')::date, $7::date + 1) AS until) u
LEFT JOIN holdings h ON h.customer_id = c.id
LEFT JOIN activity a ON a.customer_id = c.id
LEFT JOIN tier tr ON tr.customer_id = c.id
WHERE {chunk_c} AND c.erased_at IS NULL AND c.onboarded_at < $1::date + interval '2 months'
ORDER BY c.id
"""


DAY_BITS = 8
"""A report's day as days after the history's start ($6): the reports read are within LOOKBACK_MONTHS months of it
(under 190 days), so under 2^8."""
PACKED_DAY_PRODUCTS_AT_MOST = 63 - DAY_BITS
"""Up to this many products, a report's (day, products) pair packs into one non-negative bigint."""


def _current_statement(by_range: bool, products: int, days_packed: bool) -> str:
    """Serving's features statement for a chunk given as an id range ($8, $9) or as an id array ($8). Each month's
    end is the greatest (day, products) pair of the reports before it: `days_packed` (up to
    PACKED_DAY_PRODUCTS_AT_MOST products), as the greatest bigint day << products | products (the same order, the
    products' bits below 2^products): integers compared instead of arrays built and compared, a tenth of the
    statement's CPU; else as arrays."""
    before = "FILTER (WHERE day < ($1::date - interval '{back} month')::date)"
    if days_packed:
        end = f"coalesce(max(((day - $6::date)::bigint << {products}) | products) {before} & {(1 << products) - 1}, 0)"
    else:
        end = f"coalesce((max(ARRAY[day - $6::date, products]) {before})[2], 0)"
    return _CURRENT.format(
        attributes=_ATTRIBUTES,
        **_chunks(8, by_range),
        ends=", ".join(end.format(back=k - 1) for k in range(LOOKBACK_MONTHS)),
    )


# Serving's rows as one row of a few values (the refresh decodes a chunk's features on its event loop, beside the
# statements of the next chunk): the ids, the holdings' masks and the numbers each as one bytea of big-endian
# int8 / float8 values (`int8send`, `float8send`: no per-value Python object; a missing number as NaN, which the
# rows' decoding gives None), the categories as arrays. Every aggregate reads the rows in the same order, so the
# i-th value of each is the same customer's.
_PACKED = """
SELECT count(*)::int AS n, string_agg(int8send(customer_id), ''::bytea) AS customer_ids,
       string_agg({holdings}, ''::bytea) AS holdings,
       string_agg({numbers}, ''::bytea) AS numbers,
       array_agg(segment) AS segments, array_agg(tier) AS tiers,
       array_agg(strings) FILTER (WHERE cardinality(strings) > 0) AS strings
FROM ({current}) f
"""


@functools.cache
def packed_statement(by_range: bool, products: int, days_packed: bool) -> str:
    """Serving's statement as one packed row (`_PACKED`): `_current_statement`'s."""
    return _PACKED.format(
        current=_current_statement(by_range, products, days_packed),
        holdings=" || ".join(f"int8send(holdings[{k + 1}])" for k in range(LOOKBACK_MONTHS + 1)),
        numbers=" || ".join(f"float8send(coalesce({c}, 'NaN'))" for c in _NUMBERS)
        + " || coalesce((SELECT string_agg(float8send(coalesce(v, 'NaN')), ''::bytea ORDER BY i)"
        " FROM unnest(numbers) WITH ORDINALITY AS u(v, i)), ''::bytea)",
    )


async def fetch_current_rows(
    conn,
    spec: FeatureSpec,
    month: date,
    today: date,
    *,
    id_range: tuple[int, int] | None = None,
    customer_ids: Sequence[int] | None = None,
) -> FeatureRows:
    """Serving's feature rows of a chunk of customers at one month (its first day): fetch_rows' for that month
    (the same features, `masks` without the month after), in a statement that reads only what serving needs."""
    if len(spec.products) > MAX_PRODUCTS:
        raise ValueError(f"the learned ranker reads at most {MAX_PRODUCTS} products (one bigint of bits a month)")
    args = [month, list(spec.products), list(spec.numeric_attributes), list(spec.string_attributes)]
    args += [spec.primary_policy, add_months(month, -(LOOKBACK_MONTHS - 1)), today]
    chunk = list(id_range) if id_range is not None else [list(customer_ids or ())]
    products = len(spec.products)
    statement = packed_statement(id_range is not None, products, products <= PACKED_DAY_PRODUCTS_AT_MOST)
    [packed] = await _fetch(conn, statement, *args, *chunk)
    return _from_packed(packed, spec, month)


def _from_packed(packed, spec: FeatureSpec, month: date) -> FeatureRows:
    """Serving's rows from their one packed row (`_PACKED`), in customer order: `_to_rows`' arrays, the same
    values."""
    n, p = packed["n"], len(spec.products)
    ids = np.frombuffer(packed["customer_ids"] or b"", dtype=">i8").astype(np.int64)
    holdings = np.frombuffer(packed["holdings"] or b"", dtype=">i8").astype(np.int64).reshape(n, LOOKBACK_MONTHS + 1)
    width = len(_NUMBERS) + len(spec.numeric_attributes)
    numbers = np.frombuffer(packed["numbers"] or b"", dtype=">f8").astype(np.float64).reshape(n, width)
    strings = packed["strings"] or [()] * n
    categories = list(zip(packed["segments"] or (), packed["tiers"] or (), strict=True))
    categories = [(*c, *s) for c, s in zip(categories, strings, strict=True)]
    order = np.argsort(ids, kind="stable")
    if (order != np.arange(n)).any():  # (aggregated in the statement's order, which is by customer)
        ids, holdings, numbers = ids[order], holdings[order], numbers[order]
        categories = [categories[i] for i in order]
    return FeatureRows(
        ids, [month] * n, _masks(holdings, p), np.zeros((n, p), dtype=bool), numbers.astype(np.float32), categories
    )
