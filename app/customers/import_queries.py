"""The SQL of a holdings import: staging lines (checked set-based against customers and products), merging one
chunk of customers into holdings, their balance history and AUM snapshots the way PUT .../holdings does for one."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.customers.service import AUM_CATEGORIES

_AUM = ", ".join(f"'{category}'" for category in AUM_CATEGORIES)


def incoming_table(import_id: int) -> str:
    """The transaction's temporary table the lines are copied into (the id is the database's own integer)."""
    return f"holding_import_incoming_{int(import_id)}"


def create_incoming(import_id: int):
    return text(
        f"CREATE TEMPORARY TABLE {incoming_table(import_id)} (line integer, external_id text, product_code text, "
        "opened_at date, balance numeric(18, 2), as_of date, pointer text, detail text) ON COMMIT DROP"
    )


def stage_incoming(import_id: int) -> str:
    """The copied lines into the import's staging, each line checked with the database in one pass: an unknown
    customer or product, a product twice for a customer; then every line of a customer with a rejected line is held
    back (their holdings stay as they are, as PUT .../holdings refuses a whole set). Sorted by customer, so that
    each chunk's lines lie together. SQL for the driver (the import id is the database's own integer)."""
    return f"""
WITH looked_up AS (
    SELECT t.*, c.id AS customer_id, p.code IS NOT NULL AS known_product,
           min(t.line) OVER (PARTITION BY c.id, t.product_code) AS first_line
    FROM {incoming_table(import_id)} t
    LEFT JOIN customer c ON c.external_id = t.external_id AND c.erased_at IS NULL
    LEFT JOIN product p ON p.code = t.product_code
), own AS (
    SELECT *,
        CASE WHEN detail IS NOT NULL THEN pointer WHEN customer_id IS NULL THEN '/customer_id'
             WHEN NOT known_product OR first_line <> line THEN '/product_code' END AS own_pointer,
        CASE WHEN detail IS NOT NULL THEN detail WHEN customer_id IS NULL THEN 'unknown customer'
             WHEN NOT known_product THEN 'unknown product'
             WHEN first_line <> line THEN 'this customer''s product appears before, on line ' || first_line
        END AS own_detail
    FROM looked_up
), held AS (
    SELECT *, min(line) FILTER (WHERE own_detail IS NOT NULL) OVER (PARTITION BY customer_id) AS first_rejected
    FROM own
)
INSERT INTO holding_import_line (import_id, line, external_id, customer_id, product_code, opened_at, balance, as_of,
                                 pointer, detail)
SELECT {int(import_id)}, line, external_id, customer_id, product_code, opened_at, balance, as_of,
       CASE WHEN own_detail IS NOT NULL THEN own_pointer
            WHEN customer_id IS NOT NULL AND first_rejected IS NOT NULL THEN '/customer_id' END,
       coalesce(own_detail, CASE WHEN customer_id IS NOT NULL AND first_rejected IS NOT NULL
                                 THEN 'not applied: line ' || first_rejected || ' of this customer was rejected' END)
FROM held ORDER BY customer_id, line
"""


STAGED_COUNTS = text("""
SELECT count(*) FILTER (WHERE detail IS NULL) AS accepted, count(*) FILTER (WHERE detail IS NOT NULL) AS rejected,
       count(DISTINCT customer_id) FILTER (WHERE detail IS NULL) AS customers
FROM holding_import_line WHERE import_id = :import_id
""")

# The id ranges of the chunks still to merge (an import's accepted lines are deleted with their chunk).
PENDING_CHUNKS = text("""
SELECT DISTINCT customer_id / :chunk_size AS chunk FROM holding_import_line
WHERE import_id = :import_id AND detail IS NULL ORDER BY 1
""")

# Two mergers of one import (the same file sent twice at once) take its chunks in turn: the second then finds the
# chunk's lines gone with the first's commit, and merges nothing twice.
IMPORT_LOCKS = 7313  # advisory-lock namespace of imports' digests, keys and chunks (7310-7312: app/tiering/runs.py)
HOLD_CHUNK = text(f"SELECT pg_advisory_xact_lock({IMPORT_LOCKS}, hashtext(:name))")

STAGED_CUSTOMERS = text("""
SELECT DISTINCT customer_id FROM holding_import_line
WHERE import_id = :import_id AND detail IS NULL AND customer_id BETWEEN :id_from AND :id_to ORDER BY 1
""")

# What PUT .../holdings does for one customer, for every customer of the chunk at once, in one statement that reads
# the chunk's staged lines once: products left out are closed, the others upserted, every balance recorded in the
# history, the day's AUM snapshot written; then the merged lines are dropped. A row the feed sends as it is stored
# is not rewritten (the same balances sent again the same day write no new version). The customer row is not
# written: its updated_at is the profile's (app.customers.service.replace_holdings).
_MERGE_CHUNK = text(f"""
WITH staged AS MATERIALIZED (
    SELECT customer_id, product_code, opened_at, balance, as_of FROM holding_import_line
    WHERE import_id = :import_id AND detail IS NULL AND customer_id BETWEEN :id_from AND :id_to
), closed AS (
    DELETE FROM holding h WHERE h.customer_id BETWEEN :id_from AND :id_to
      AND h.customer_id IN (SELECT customer_id FROM staged)
      AND NOT EXISTS (SELECT 1 FROM staged s WHERE s.customer_id = h.customer_id AND s.product_code = h.product_code)
), upserted AS (
    INSERT INTO holding AS h (customer_id, product_code, opened_at, balance, as_of)
    SELECT * FROM staged ORDER BY customer_id, product_code
    ON CONFLICT (customer_id, product_code) DO UPDATE SET
        opened_at = excluded.opened_at, balance = excluded.balance, as_of = excluded.as_of
    WHERE (h.opened_at, h.balance, h.as_of) IS DISTINCT FROM (excluded.opened_at, excluded.balance, excluded.as_of)
), history AS (
    INSERT INTO holding_balance AS b (customer_id, product_code, as_of, balance)
    SELECT customer_id, product_code, as_of, balance FROM staged ORDER BY customer_id, product_code
    ON CONFLICT (customer_id, product_code, as_of) DO UPDATE SET balance = excluded.balance
    WHERE b.balance IS DISTINCT FROM excluded.balance
), snapshot AS (
    INSERT INTO customer_aum_daily AS d (customer_id, day, aum)
    SELECT s.customer_id, max(s.as_of), coalesce(sum(s.balance) FILTER (WHERE p.category IN ({_AUM})), 0)
    FROM staged s JOIN product p ON p.code = s.product_code
    GROUP BY s.customer_id ORDER BY s.customer_id
    ON CONFLICT (customer_id, day) DO UPDATE SET aum = excluded.aum WHERE d.aum IS DISTINCT FROM excluded.aum
), merged AS (
    DELETE FROM holding_import_line WHERE import_id = :import_id AND detail IS NULL
      AND customer_id BETWEEN :id_from AND :id_to
)  -- the products newly held (every part reads the holdings as they were before the statement), of quota'd products
SELECT s.product_code, s.customer_id, s.balance FROM staged s
WHERE s.product_code IN (SELECT product_code FROM product_quota)
  AND NOT EXISTS (SELECT 1 FROM holding h WHERE h.customer_id = s.customer_id AND h.product_code = s.product_code)
ORDER BY s.product_code, s.customer_id
""")

CHUNK_DONE = text("""
UPDATE holding_import SET customers_done = customers_done + :customers, chunks_done = chunks_done + 1
WHERE id = :import_id
""")


async def merge_chunk(session: AsyncSession, import_id: int, id_from: int, id_to: int) -> list[tuple]:
    """Merge the staged lines of customers with ids in [id_from, id_to] (locked by the caller), then drop them.
    Returns (product_code, customer_id, balance) of each product of a quota the customer did not hold before."""
    result = await session.execute(_MERGE_CHUNK, {"import_id": import_id, "id_from": id_from, "id_to": id_to})
    return [tuple(row) for row in result.all()]
