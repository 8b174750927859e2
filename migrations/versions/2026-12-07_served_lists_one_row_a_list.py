"""served lists: one row a list, its items in arrays by rank; recommendation_item becomes a view

Revision ID: d0c0ffee0056
Revises: cac0ffee0055
Create Date: 2026-12-07 02:40:00

Every GET recommendations stores its list: until now a recommendation_list row and a recommendation_item row per
item (about 11 B-tree insertions a list of 5). Now one recommendation_list row a list, its items' products, scores,
propensities and reasons in arrays by rank: two B-tree insertions (the key and `id`). The list's `id` becomes a
UUID version 7 with its last 4 bits zero, and an item's recommendation_id is that id with its rank in those bits,
so the feedback intake finds the item by the list's id (app/recommendations/models.py).

Conversion (upgrade): the array columns and `new_id` are added to the partitioned table (and so to every
partition), each list filled from its items (ordered by rank), its new id made from its served_at (UUIDv7: the
milliseconds, then random bits, the last 4 zero) and its items' own ids kept in `legacy_ids`, by rank (a partial
GIN index finds them; lists served from now on leave it NULL and do not pay it). The bigint id and its sequence are
dropped, `new_id` becomes `id`, the key is rebuilt on it, and recommendation_item (with its partitions) is dropped
and made a view of the lists, one row per item with the former columns (list_id now the list's uuid), for readers.

The downgrade does the reverse: recommendation_item partitioned again (the months of recommendation_list's
partitions, and a default), filled from the arrays (ids from legacy_ids or derived from the list's id), the lists
given bigint ids from a new sequence, the arrays dropped. Both take an exclusive lock on the tables for the
conversion: fine for the demo size; a bank's database would convert with the service stopped.
"""

import re
from collections.abc import Sequence

from alembic import op

revision: str = "d0c0ffee0056"
down_revision: str | None = "cac0ffee0055"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# a recommendation_id's rank bits (app/recommendations/served.py: RANK_BITS), as SQL
_ITEM_ID = "encode(set_byte(uuid_send({list_id}), 15, get_byte(uuid_send({list_id}), 15) | {rank}), 'hex')::uuid"

VIEW = f"""
CREATE VIEW recommendation_item AS
SELECT coalesce(l.legacy_ids[i.rank], {_ITEM_ID.format(list_id="l.id", rank="i.rank::int")}) AS recommendation_id,
       l.id AS list_id, l.customer_id, i.product_code, l.tier_code, i.rank::smallint AS rank,
       l.scores[i.rank] AS score, l.propensities[i.rank] AS propensity, l.strategy,
       l.reasons -> (i.rank::int - 1) AS reasons, l.served_at
FROM recommendation_list l CROSS JOIN LATERAL unnest(l.product_codes) WITH ORDINALITY AS i(product_code, rank)
"""

# a UUIDv7 from a list's served_at: a random UUID, its first 48 bits the milliseconds, its version 7, the last 4 bits 0
_LIST_ID = """(
    SELECT encode(set_byte(set_byte(b, 6, (get_byte(b, 6) & 15) | 112), 15, get_byte(b, 15) & 240), 'hex')::uuid
    FROM (SELECT overlay(uuid_send(gen_random_uuid())
                         PLACING decode(lpad(to_hex((extract(epoch FROM l.served_at) * 1000)::bigint), 12, '0'), 'hex')
                         FROM 1 FOR 6) AS b) AS random_bytes
)"""


def _partitions(table: str) -> list[str]:
    rows = op.get_bind().exec_driver_sql(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        f"WHERE i.inhparent = '{table}'::regclass ORDER BY 1"
    )
    return [name for (name,) in rows]


def upgrade() -> None:
    op.execute(
        "ALTER TABLE recommendation_list ADD COLUMN new_id uuid, ADD COLUMN product_codes text[], "
        "ADD COLUMN scores numeric(12, 6)[], ADD COLUMN propensities numeric(8, 6)[], ADD COLUMN reasons jsonb, "
        "ADD COLUMN legacy_ids uuid[]"
    )
    op.execute(
        f"UPDATE recommendation_list l SET new_id = {_LIST_ID}, product_codes = '{{}}', scores = '{{}}', "
        "propensities = '{}', reasons = '[]'"
    )
    op.execute("""
        UPDATE recommendation_list l
        SET product_codes = i.product_codes, scores = i.scores, propensities = i.propensities, reasons = i.reasons,
            legacy_ids = i.legacy_ids
        FROM (
            SELECT customer_id, list_id, array_agg(product_code ORDER BY rank) AS product_codes,
                   array_agg(score ORDER BY rank) AS scores, array_agg(propensity ORDER BY rank) AS propensities,
                   jsonb_agg(reasons ORDER BY rank) AS reasons, array_agg(recommendation_id ORDER BY rank) AS legacy_ids
            FROM recommendation_item GROUP BY customer_id, list_id
        ) i
        WHERE l.customer_id = i.customer_id AND l.id = i.list_id
    """)
    op.execute("DROP TABLE recommendation_item")
    op.execute("ALTER TABLE recommendation_list DROP CONSTRAINT pk_recommendation_list")
    op.execute("ALTER TABLE recommendation_list DROP COLUMN id")  # and its sequence, which it owns
    op.execute("ALTER TABLE recommendation_list RENAME COLUMN new_id TO id")
    for column in ("id", "product_codes", "scores", "propensities", "reasons"):
        op.execute(f"ALTER TABLE recommendation_list ALTER COLUMN {column} SET NOT NULL")
    op.execute(
        "ALTER TABLE recommendation_list ADD CONSTRAINT pk_recommendation_list PRIMARY KEY (customer_id, id, served_at)"
    )
    op.execute("CREATE INDEX ix_recommendation_list_id ON recommendation_list (id)")
    op.execute(
        "CREATE INDEX ix_recommendation_list_legacy_ids ON recommendation_list USING gin (legacy_ids) "
        "WHERE legacy_ids IS NOT NULL"
    )
    op.execute(VIEW)


def downgrade() -> None:
    op.execute("DROP VIEW recommendation_item")
    op.execute("""
        CREATE TABLE recommendation_item (
            recommendation_id uuid NOT NULL,
            list_id bigint NOT NULL,
            customer_id bigint NOT NULL,
            product_code varchar(40) NOT NULL,
            tier_code varchar(40),
            rank smallint NOT NULL,
            score numeric(12, 6) NOT NULL,
            propensity numeric(8, 6) NOT NULL,
            strategy varchar(20) NOT NULL,
            reasons jsonb NOT NULL,
            served_at timestamptz NOT NULL DEFAULT now(),
            CONSTRAINT pk_recommendation_item PRIMARY KEY (customer_id, recommendation_id, served_at)
        ) PARTITION BY RANGE (served_at)
    """)
    for name in _partitions("recommendation_list"):
        bound = (
            op.get_bind()
            .exec_driver_sql(f"SELECT pg_get_expr(relpartbound, oid) FROM pg_class WHERE relname = '{name}'")
            .scalar()
        )
        item = re.sub(r"^recommendation_list_", "recommendation_item_", name)
        op.execute(f"CREATE TABLE {item} PARTITION OF recommendation_item {bound}")
    op.execute("CREATE SEQUENCE recommendation_list_id_seq")
    op.execute("ALTER TABLE recommendation_list RENAME COLUMN id TO new_id")
    op.execute("ALTER TABLE recommendation_list ADD COLUMN id bigint")
    op.execute("UPDATE recommendation_list SET id = nextval('recommendation_list_id_seq')")
    op.execute(f"""
        INSERT INTO recommendation_item (recommendation_id, list_id, customer_id, product_code, tier_code, rank, score,
                                         propensity, strategy, reasons, served_at)
        SELECT coalesce(l.legacy_ids[i.rank], {_ITEM_ID.format(list_id="l.new_id", rank="i.rank::int")}), l.id,
               l.customer_id, i.product_code, l.tier_code, i.rank, l.scores[i.rank], l.propensities[i.rank],
               l.strategy, l.reasons -> (i.rank::int - 1), l.served_at
        FROM recommendation_list l CROSS JOIN LATERAL unnest(l.product_codes) WITH ORDINALITY AS i(product_code, rank)
    """)
    op.execute("DROP INDEX ix_recommendation_list_legacy_ids")
    op.execute("DROP INDEX ix_recommendation_list_id")
    op.execute("ALTER TABLE recommendation_list DROP CONSTRAINT pk_recommendation_list")
    op.execute(
        "ALTER TABLE recommendation_list DROP COLUMN new_id, DROP COLUMN product_codes, DROP COLUMN scores, "
        "DROP COLUMN propensities, DROP COLUMN reasons, DROP COLUMN legacy_ids"
    )
    op.execute("ALTER TABLE recommendation_list ALTER COLUMN id SET DEFAULT nextval('recommendation_list_id_seq')")
    op.execute("ALTER TABLE recommendation_list ALTER COLUMN id SET NOT NULL")
    op.execute("ALTER SEQUENCE recommendation_list_id_seq OWNED BY recommendation_list.id")
    op.execute(
        "ALTER TABLE recommendation_list ADD CONSTRAINT pk_recommendation_list PRIMARY KEY (customer_id, id, served_at)"
    )
    op.execute("CREATE INDEX ix_recommendation_item_recommendation ON recommendation_item (recommendation_id)")
