"""The migration that indexes holding_balance by as_of (cac0ffee0055) keeps every balance, and the day of the last
report is read from the index's end (no scan of the table); its downgrade drops the index and keeps the rows."""

import asyncio

from alembic import command

from tests.core.migration_sql import run_sql, table_counts, upgraded_with_rows

BEFORE = "c7c0ffee0052"
AFTER = "cac0ffee0055"
INDEX = "SELECT count(*) FROM pg_indexes WHERE indexname = 'ix_holding_balance_as_of'"
LAST_REPORT = "SELECT max(as_of) FROM holding_balance WHERE as_of <= DATE '2026-12-01'"

SEED = [
    "INSERT INTO customer (id, external_id, segment, onboarded_at) VALUES "
    "(1, 'HB-1', 'retail', '2024-01-01'), (2, 'HB-2', 'retail', '2024-01-01')",
    "INSERT INTO holding_balance (customer_id, product_code, as_of, balance) VALUES "
    "(1, 'savings_account', '2026-10-31', 10), (1, 'savings_account', '2026-11-30', 20), "
    "(2, 'credit_card', '2026-11-15', 5), (2, 'credit_card', '2026-12-05', 7)",
]


def test_balances_indexed_by_day_and_back(scratch_database):
    url = scratch_database()
    config = upgraded_with_rows(url, BEFORE, SEED, AFTER)
    assert table_counts(url, {"holding_balance": 4}) == {"holding_balance": 4}
    [index, last, _, plan] = asyncio.run(
        run_sql(url, [INDEX, LAST_REPORT, "SET LOCAL enable_seqscan = off", "EXPLAIN (COSTS OFF) " + LAST_REPORT])
    )
    assert index == [(1,)] and str(last[0][0]) == "2026-11-30"
    assert any("ix_holding_balance_as_of" in row[0] for row in plan)

    command.downgrade(config, BEFORE)
    [index, last] = asyncio.run(run_sql(url, [INDEX, LAST_REPORT]))
    assert index == [(0,)] and str(last[0][0]) == "2026-11-30"
    command.upgrade(config, AFTER)
    assert table_counts(url, {"holding_balance": 4}) == {"holding_balance": 4}
