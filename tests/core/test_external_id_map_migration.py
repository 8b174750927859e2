"""The migration that moves the uniqueness of external ids to customer_external_id (c7c0ffee0052) converts a
database with customers in it (an erased one too), and its downgrade converts it back: the map filled with every
customer row, customer.external_id a plain index, the unique constraint restored."""

import asyncio

import pytest
from alembic import command
from sqlalchemy.exc import IntegrityError

from tests.core.migration_sql import run_sql, table_counts, upgraded_with_rows

BEFORE = "c6c0ffee0051"
AFTER = "c7c0ffee0052"
UNIQUE = "SELECT count(*) FROM pg_constraint WHERE conname = 'uq_customer_external_id'"
PLAIN_INDEX = "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_customer_external_id'"
MAP = "SELECT external_id, customer_id FROM customer_external_id ORDER BY customer_id"

SEED = [
    "INSERT INTO customer (id, external_id, segment, onboarded_at, erased_at) VALUES "
    "(1, 'MAP-1', 'retail', '2024-01-01', NULL), (2, 'MAP-2', 'retail', '2024-01-01', NULL), "
    "(3, 'erased:00ff', 'retail', '2024-01-01', now())",
    "SELECT setval(pg_get_serial_sequence('customer', 'id'), 3)",
]
NEW = (
    "WITH c AS (INSERT INTO customer (external_id, segment, onboarded_at) VALUES ('MAP-4', 'retail', now()) "
    "RETURNING id, external_id) INSERT INTO customer_external_id SELECT external_id, id FROM c RETURNING customer_id"
)


def test_external_ids_move_to_their_map_and_back(scratch_database):
    url = scratch_database()
    config = upgraded_with_rows(url, BEFORE, SEED, AFTER)
    [unique, index, mapped, fresh] = asyncio.run(run_sql(url, [UNIQUE, PLAIN_INDEX, MAP, NEW]))
    assert unique == [(0,)] and "UNIQUE" not in index[0][0] and "(external_id)" in index[0][0]
    assert mapped == [("MAP-1", 1), ("MAP-2", 2), ("erased:00ff", 3)]
    assert fresh == [(4,)]
    with pytest.raises(IntegrityError):  # the map holds the ids unique now
        asyncio.run(run_sql(url, ["INSERT INTO customer_external_id VALUES ('MAP-1', 5)"]))

    command.downgrade(config, BEFORE)
    assert table_counts(url, {"customer": 4}) == {"customer": 4}
    [unique, index, table] = asyncio.run(
        run_sql(url, [UNIQUE, PLAIN_INDEX, "SELECT to_regclass('customer_external_id') IS NULL"])
    )
    assert unique == [(1,)] and index == [] and table == [(True,)]
    command.upgrade(config, AFTER)
    assert asyncio.run(run_sql(url, [MAP]))[0][-1] == ("MAP-4", 4)
