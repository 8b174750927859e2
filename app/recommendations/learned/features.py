"""The learned ranker's features, computed set-based in SQL: one statement per chunk of customers gives, for each
customer and month, the month-end holdings of that month and the months before it, what was added the month after
(the label), the profile, the tier and the activity. Training reads many months; serving reads the current one.

Month-end holdings are the products of the customer's last holdings report on or before the month's end (a report:
a day with balances in holding_balance, or with only an AUM snapshot, which is what an empty set leaves): a
product missing from a later report was dropped; a month without a report keeps the last one's (reports are read
from LOOKBACK_MONTHS before the first month on). Custom attributes the bank declares are features
too (numbers and booleans as numbers, strings as categories), so income or the channel of entry count where the
bank stores them. The tier is today's effective tier under the primary policy (tier history is not kept per month).
"""

import asyncio
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import date
from typing import Any

import numpy as np

LOOKBACK_MONTHS = 6
"""Months of holdings each row sees: the month itself and the five before it."""
MAX_PRODUCTS = 63
"""Holdings travel as one bigint bitmask per customer and month."""
ALL = 1_000_000
"""keep_per_million that keeps every row (no sampling)."""
TIMEOUT_S = 3600.0
"""Per statement: a chunk of a training read can take minutes (the engine's 60 s is meant for requests)."""


# $1 month dates (first days), $2 product codes, $3 numeric attribute names, $4 string attribute names,
# $5 primary policy, $6 history start, $7 history end (exclusive), $8 today, $9 keep per million negatives,
# $10 seed, $11 only customers with a report by the month's end, then the chunk ($12, $13: an id range; or $12: an
# id array).
# The declared custom attributes ($3: numbers and booleans, $4: strings), in the spec's order: both statements'.
_ATTRIBUTES = """ARRAY(SELECT CASE jsonb_typeof(c.attributes -> n) WHEN 'number' THEN (c.attributes ->> n)::float8
                    WHEN 'boolean' THEN ((c.attributes ->> n)::boolean)::int::float8 END
             FROM unnest($3::text[]) WITH ORDINALITY AS u(n, i) ORDER BY i) AS numbers,
       ARRAY(SELECT CASE jsonb_typeof(c.attributes -> n) WHEN 'string' THEN c.attributes ->> n END
             FROM unnest($4::text[]) WITH ORDINALITY AS u(n, i) ORDER BY i) AS strings"""


# The statements' aliases whose rows are a customer's, with the column holding the customer's id.
_ALIASES = (("b", "customer_id"), ("u", "customer_id"), ("e", "customer_id"), ("d", "customer_id"))
_ALIASES += (("a", "customer_id"), ("c", "id"))


def _chunks(first: int, by_range: bool) -> dict[str, str]:
    """A chunk's filter on each alias's customer column (`chunk_b` ... `chunk_c` in a statement): an id range
    ($first, $first + 1) or an id array ($first)."""
    if by_range:
        return {f"chunk_{a}": f"{a}.{c} BETWEEN ${first}::bigint AND ${first + 1}::bigint" for a, c in _ALIASES}
    return {f"chunk_{a}": f"{a}.{c} = ANY(${first}::bigint[])" for a, c in _ALIASES}


_FEATURES = """
WITH target AS (
    SELECT t::date AS month, (date_part('year', t) * 12 + date_part('month', t))::int AS n,
           least((t + interval '1 month')::date, $8::date + 1) AS until
    FROM unnest($1::date[]) AS t
), product AS (
    SELECT code, (idx - 1)::int AS idx FROM unnest($2::text[]) WITH ORDINALITY AS p(code, idx)
), day_held AS (  -- the products of each day with a holdings report (a bitmask: bit i, the i-th product)
    SELECT b.customer_id, b.as_of AS day, coalesce(bit_or(1::bigint << p.idx), 0) AS products
    FROM holding_balance b LEFT JOIN product p ON p.code = b.product_code
    WHERE {chunk_b} AND b.as_of >= $6::date AND b.as_of < $7::date
    GROUP BY 1, 2
), report AS (  -- each customer's last report in each month of the history (an empty set of holdings leaves only
                --  its day's AUM snapshot, so those days count too)
    SELECT r.customer_id, (date_part('year', r.day) * 12 + date_part('month', r.day))::int AS n, max(r.day) AS day
    FROM (SELECT customer_id, day FROM day_held
          UNION ALL
          SELECT u.customer_id, u.day FROM customer_aum_daily u
          WHERE {chunk_u} AND u.day >= $6::date AND u.day < $7::date) r
    GROUP BY 1, 2
), month_end AS (  -- per customer and month from the first report on, the last report on or before its end
    SELECT f.customer_id, m.n, max(r.day) OVER (PARTITION BY f.customer_id ORDER BY m.n) AS day
    FROM (SELECT customer_id, min(n) AS first FROM report GROUP BY 1) f
    CROSS JOIN LATERAL generate_series(f.first, (date_part('year', $7::date) * 12
                                                 + date_part('month', $7::date))::int - 1) AS m(n)
    LEFT JOIN report r ON r.customer_id = f.customer_id AND r.n = m.n
), held AS (  -- the products held at each month's end
    SELECT e.customer_id, e.n, coalesce(d.products, 0) AS products
    FROM month_end e LEFT JOIN day_held d ON d.customer_id = e.customer_id AND d.day = e.day
), holdings AS (  -- the month after, the month itself and the {lookback_before} before it (months are contiguous)
    SELECT customer_id, n, ARRAY[coalesce(lead(products) OVER w, 0), products, {lags}] AS products
    FROM held WINDOW w AS (PARTITION BY customer_id ORDER BY n)
), accepted AS (  -- accepts and conversions of served products in the month after
    SELECT e.customer_id, t.month, array_agg(DISTINCT p.idx) AS products
    FROM feedback_event e
    JOIN target t ON e.occurred_at >= (t.month + interval '1 month')::timestamp AT TIME ZONE 'UTC'
                 AND e.occurred_at < (t.month + interval '2 months')::timestamp AT TIME ZONE 'UTC'
    JOIN product p ON p.code = e.product_code
    WHERE {chunk_e} AND e.kind IN ('accept', 'convert')
    GROUP BY 1, 2
), activity AS (  -- the 30 and 90 days before the month's end (or today's end, in the current month)
    SELECT d.customer_id, t.month,
           coalesce(sum(d.txn_count) FILTER (WHERE d.day >= t.until - 30), 0)::float8 AS txn_count_30d,
           coalesce(sum(d.txn_amount) FILTER (WHERE d.day >= t.until - 30), 0)::float8 AS txn_amount_30d,
           coalesce(sum(d.logins) FILTER (WHERE d.day >= t.until - 30), 0)::float8 AS logins_30d,
           sum(d.txn_count)::float8 AS txn_count_90d
    FROM customer_activity_daily d JOIN target t ON d.day >= t.until - 90 AND d.day < t.until
    WHERE {chunk_d}
    GROUP BY 1, 2
), tier AS (
    SELECT a.customer_id, effective_tier(a) AS code
    FROM tier_assignment a JOIN tier_policy p ON p.id = a.policy_id
    WHERE {chunk_a} AND p.key = $5::text
)
SELECT c.id AS customer_id, t.month,
       coalesce(h.products, '{{0,0,0,0,0,0,0}}') AS holdings,
       coalesce(x.products, '{{}}') AS accepted,
       date_part('year', age(t.until, c.birth_date))::float8 AS age,
       (date_part('year', age(t.until, c.onboarded_at)) * 12 + date_part('month', age(t.until, c.onboarded_at)))
           ::float8 AS tenure_months,
       coalesce(a.txn_count_30d, 0) AS txn_count_30d, coalesce(a.txn_amount_30d, 0) AS txn_amount_30d,
       coalesce(a.logins_30d, 0) AS logins_30d, coalesce(a.txn_count_90d, 0) AS txn_count_90d,
       c.segment, tr.code AS tier,
       {attributes}
FROM customer c CROSS JOIN target t
LEFT JOIN holdings h ON h.customer_id = c.id AND h.n = t.n
LEFT JOIN accepted x ON x.customer_id = c.id AND x.month = t.month
LEFT JOIN activity a ON a.customer_id = c.id AND a.month = t.month
LEFT JOIN tier tr ON tr.customer_id = c.id
WHERE {chunk_c} AND c.erased_at IS NULL
  AND c.onboarded_at < t.month + interval '2 months'  -- a customer by the end of the month after
  AND (NOT $11::boolean OR h.customer_id IS NOT NULL)
  AND ($9::int >= {all} OR h.products[1] & ~h.products[2] <> 0 OR x.products IS NOT NULL
       OR abs(hashtextextended(c.id::text || ':' || t.month::text, $10::bigint) % {all}) < $9::int)
ORDER BY c.id, t.month
"""


def _statement(by_range: bool) -> str:
    """The features statement for a chunk given as an id range ($12, $13) or as an id array ($12)."""

    return _FEATURES.format(
        attributes=_ATTRIBUTES,
        **_chunks(12, by_range),
        all=ALL,
        lookback_before=LOOKBACK_MONTHS - 1,
        lags=", ".join(f"coalesce(lag(products, {k}) OVER w, 0)" for k in range(1, LOOKBACK_MONTHS)),
    )


FEATURES_BY_RANGE = _statement(by_range=True)
FEATURES_BY_IDS = _statement(by_range=False)

_NUMBERS = ("age", "tenure_months", "txn_count_30d", "txn_amount_30d", "logins_30d", "txn_count_90d")

PER_PRODUCT = ("held", "held_1m_ago", "held_2m_ago", "months_since_held")
COMMON = (
    "products_held",
    "products_held_1m_ago",
    "products_added",
    "products_dropped",
    "age",
    "tenure_months",
    "txn_count_30d",
    "txn_amount_30d",
    "logins_30d",
    "txn_count_90d",
)
CATEGORIES = ("segment", "tier")


@dataclass(frozen=True)
class FeatureSpec:
    """What a model's features are made of: the products (their order is the order of every per-product column
    and of the propensities), the custom attributes read, and the policy whose tier is a feature."""

    products: tuple[str, ...]
    numeric_attributes: tuple[str, ...]
    string_attributes: tuple[str, ...]
    primary_policy: str

    def names(self) -> list[str]:
        """Every feature's name, in the columns' order."""
        return (
            [f"{kind}:{p}" for p in self.products for kind in PER_PRODUCT]
            + list(COMMON)
            + [f"attribute:{a}" for a in self.numeric_attributes]
            + list(CATEGORIES)
            + [f"attribute:{a}" for a in self.string_attributes]
        )

    def categorical(self) -> list[int]:
        """Positions of the categorical columns (segment, tier, string attributes): codes by frequency rank, NaN
        when missing."""
        first = len(self.products) * len(PER_PRODUCT) + len(COMMON) + len(self.numeric_attributes)
        return list(range(first, first + len(CATEGORIES) + len(self.string_attributes)))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "FeatureSpec":
        return cls(
            tuple(data["products"]),
            tuple(data["numeric_attributes"]),
            tuple(data["string_attributes"]),
            data["primary_policy"],
        )


async def feature_spec(conn, primary_policy: str) -> FeatureSpec:
    """The spec of today's catalog: active non-service products, and the custom attributes a model can read."""
    products = [
        r[0] for r in await conn.fetch("SELECT code FROM product WHERE is_active AND NOT is_service ORDER BY code")
    ]
    attributes = await conn.fetch("SELECT name, type FROM custom_attribute_definition ORDER BY name")
    return FeatureSpec(
        tuple(products),
        tuple(n for n, t in attributes if t in ("number", "integer", "boolean")),
        tuple(n for n, t in attributes if t == "string"),
        primary_policy,
    )


@dataclass
class FeatureRows:
    """One chunk's rows as arrays: per (customer, month), the holdings masks (n x products; bit 0 the month after,
    bit 1 the month itself, bit k k-1 months before), the accepted products of the month after, the numeric
    features and the raw category values."""

    customer_ids: np.ndarray
    months: list[date]
    masks: np.ndarray
    accepted: np.ndarray
    numbers: np.ndarray
    categories: list[tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.customer_ids)

    def take(self, keep: np.ndarray) -> "FeatureRows":
        """The rows where `keep` (bool) is true."""
        if keep.all():
            return self
        index = np.flatnonzero(keep)
        return FeatureRows(
            self.customer_ids[index],
            [self.months[i] for i in index],
            self.masks[index],
            self.accepted[index],
            self.numbers[index],
            [self.categories[i] for i in index],
        )

    def held(self) -> np.ndarray:
        """Products held at the month's end (n x products, bool)."""
        return (self.masks & 2) != 0

    def labels(self) -> np.ndarray:
        """Products added the month after, or accepted or converted then (n x products, bool): not held now."""
        return (((self.masks & 3) == 1) | self.accepted) & ~self.held()


def _bit_position(masks: np.ndarray) -> np.ndarray:
    """Index of the lowest set bit (months since last held + 1), NaN where no bit is set."""
    out = np.full(masks.shape, np.nan, dtype=np.float32)
    for k in range(LOOKBACK_MONTHS, 0, -1):
        out[(masks >> k) & 1 == 1] = k - 1
    return out


async def fetch_rows(
    conn,
    spec: FeatureSpec,
    months: Sequence[date],
    today: date,
    *,
    id_range: tuple[int, int] | None = None,
    customer_ids: Sequence[int] | None = None,
    keep_per_million: int = ALL,
    seed: int = 0,
    reported_only: bool = False,
) -> FeatureRows:
    """The feature rows of a chunk of customers (an id range, or a list of ids) for each of `months` (first days):
    every row, or with `keep_per_million` < ALL, the rows with a label and that share of the others (a sample
    that depends only on customer, month and seed). With `reported_only` (training), only customers with a
    holdings report by the month's end: before its first report a customer's holdings are unknown, not empty.
    One statement."""
    if len(spec.products) > MAX_PRODUCTS:
        raise ValueError(f"the learned ranker reads at most {MAX_PRODUCTS} products (one bigint of bits a month)")
    history_from = add_months(min(months), -(LOOKBACK_MONTHS - 1))
    history_to = add_months(max(months), 2)
    args = [
        list(months),
        list(spec.products),
        list(spec.numeric_attributes),
        list(spec.string_attributes),
        spec.primary_policy,
        history_from,
        history_to,
        today,
        keep_per_million,
        seed,
        reported_only,
    ]
    statement, chunk = (
        (FEATURES_BY_RANGE, list(id_range)) if id_range is not None else (FEATURES_BY_IDS, [list(customer_ids or ())])
    )
    records = await _fetch(conn, statement, *args, *chunk)
    if len(records) > 10_000:  # a training chunk: decoded off the event loop (the schedule runs in the server)
        return await asyncio.to_thread(_to_rows, records, spec)
    return _to_rows(records, spec)


async def _fetch(conn, statement: str, *args) -> list:
    # Hash joins only: with statistics that miss fresh rows (a bulk load, a test) the planner would re-aggregate
    # the holdings once per customer and month in a nested loop. And no JIT: the costs that turns up would have
    # it compile the statement for seconds. SET LOCAL inside a savepoint of the caller's transaction (or a
    # transaction of its own), restored after.
    # Planned for each chunk's own values: asyncpg prepares a statement once, and from the sixth execution Postgres
    # may keep a generic plan, which knows nothing of a chunk's id range (serving's statement took twice the CPU
    # of the plan for the chunk's values, a third more: bench/RESULTS.md, refresh23).
    async with conn.transaction():
        previous = await conn.fetchval(
            "SELECT ARRAY[current_setting('enable_nestloop'), current_setting('jit'), "
            "current_setting('plan_cache_mode')]"
        )
        await conn.execute(
            "SET LOCAL enable_nestloop = off; SET LOCAL jit = off; SET LOCAL plan_cache_mode = force_custom_plan"
        )
        records = await conn.fetch(statement, *args, timeout=TIMEOUT_S)
        await conn.execute(
            "SELECT set_config('enable_nestloop', ($1::text[])[1], true), set_config('jit', ($1::text[])[2], true), "
            "set_config('plan_cache_mode', ($1::text[])[3], true)",
            previous,
        )
    return records


def _masks(holdings: np.ndarray, products: int) -> np.ndarray:
    """Per row and product, the months held as bits (bit k: the k-th of the row's holdings bitmasks)."""
    bits = (holdings[:, :, None] >> np.arange(products, dtype=np.int64)) & 1  # rows x months x products
    return (bits << np.arange(LOOKBACK_MONTHS + 1, dtype=np.int64)[None, :, None]).sum(axis=1).astype(np.int32)


def _to_rows(records, spec: FeatureSpec) -> FeatureRows:
    n, p = len(records), len(spec.products)
    holdings = np.array([r["holdings"] for r in records], dtype=np.int64).reshape(n, LOOKBACK_MONTHS + 1)
    masks = _masks(holdings, p)
    accepted = np.zeros((n, p), dtype=bool)
    for i, r in enumerate(records):
        if r["accepted"]:
            accepted[i, r["accepted"]] = True
    width = len(_NUMBERS) + len(spec.numeric_attributes)
    numbers = (
        np.array([[r[c] for c in _NUMBERS] + list(r["numbers"]) for r in records], dtype=np.float64)
        .reshape(n, width)
        .astype(np.float32)
    )
    categories = [(r["segment"], r["tier"], *r["strings"]) for r in records]
    return FeatureRows(
        np.fromiter((r["customer_id"] for r in records), dtype=np.int64, count=n),
        [r["month"] for r in records],
        masks,
        accepted,
        numbers,
        categories,
    )


def encode_categories(values: list[tuple[Any, ...]], vocabularies: list[list[str]]) -> np.ndarray:
    """Category values as codes of the model's vocabularies (an unknown value: one past the last; none: NaN)."""
    out = np.full((len(values), len(vocabularies)), np.nan, dtype=np.float32)
    for j, vocabulary in enumerate(vocabularies):
        index = {v: i for i, v in enumerate(vocabulary)}
        other = len(vocabulary)
        out[:, j] = [np.nan if row[j] is None else index.get(row[j], other) for row in values]
    return out


def learn_vocabularies(values: list[tuple[Any, ...]], width: int, top: int = 60) -> list[list[str]]:
    """Each category column's most frequent values (ties by value), the rest pooled as one unknown code."""
    vocabularies = []
    for j in range(width):
        counts: dict[str, int] = {}
        for row in values:
            if row[j] is not None:
                counts[row[j]] = counts.get(row[j], 0) + 1
        vocabularies.append([v for v, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]])
    return vocabularies


def feature_matrix(rows: FeatureRows, vocabularies: list[list[str]]) -> np.ndarray:
    """The model's input (rows x FeatureSpec.names()), float32 with NaN for missing values."""
    recent = rows.masks >> 1  # bit 0: the month itself
    held = (recent & 1).astype(np.float32)
    per_product = np.stack(
        [
            held,
            ((recent >> 1) & 1).astype(np.float32),
            ((recent >> 2) & 1).astype(np.float32),
            _bit_position(rows.masks),
        ],
        axis=2,
    ).reshape(len(rows), -1)
    before = ((recent >> 1) & 1).astype(np.float32)
    common = np.column_stack([held.sum(1), before.sum(1), (held * (1 - before)).sum(1), (before * (1 - held)).sum(1)])
    return np.hstack(
        [per_product, common.astype(np.float32), rows.numbers, encode_categories(rows.categories, vocabularies)]
    ).astype(np.float32)


def add_months(month: date, count: int) -> date:
    """The first day of the month `count` months after (or before) `month`'s."""
    index = month.year * 12 + month.month - 1 + count
    return date(index // 12, index % 12 + 1, 1)
