"""Features computed once for every policy a refresh evaluates: a refresh of many customers under several policies
(an import's or an intake's batch, a chunk of holdings) stages the customers' features in the transaction's own
table, and each policy's assignment statement reads them from there instead of computing them again (the features
SELECT was about half of each policy's statement: bench/RESULTS.md, issue 20's import follow-up).

The features read nothing a policy's statement writes (tier assignments, transitions, webhook events), so the rows
staged before the first statement are the rows each statement would have computed; the transaction's now() is the
same for all of them."""

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from app.rules import customer_features

TABLE = "tier_features_staged"
# A connection's own table, created on its first staging and emptied at each commit (a table dropped at commit would
# be created again by every refresh; dead rows of a table kept are never vacuumed). Its columns are the features'.
_CREATE = sa.text(
    f"CREATE TEMPORARY TABLE IF NOT EXISTS {TABLE} ON COMMIT DELETE ROWS AS "
    "SELECT * FROM customer_features_between(0, -1) WITH NO DATA"
)
_EMPTY = sa.text(f"DELETE FROM {TABLE}")  # a second refresh in the same transaction (a batch's two scopes)
_FILL_RANGE = sa.text(f"INSERT INTO {TABLE} SELECT * FROM customer_features_between(:id_from, :id_to)")
_FILL_IDS = sa.text(f"INSERT INTO {TABLE} SELECT * FROM customer_features_for(CAST(:ids AS bigint[]))")

MIN_CUSTOMERS = 100
"""Fewer customers than this (a PUT, a small intake batch) are evaluated from the features SELECT as before: the
staging's own statements cost more than computing a few customers' features once per policy."""


def staged_features() -> sa.FromClause:
    """The staged rows as the features relation the policies' conditions compile against (the view's columns)."""
    return sa.table(TABLE, *(sa.column(c.name, c.type) for c in customer_features.c)).alias("customer_features")


async def stage(session: AsyncSession, ids: Sequence[int], id_range: tuple[int, int] | None) -> None:
    """Stage the features of these customers (`ids` sorted and distinct), or of their dense id range when given:
    the rows customer_features_between or customer_features_for would give each policy's statement."""
    await session.execute(_CREATE)
    await session.execute(_EMPTY)
    if id_range is not None:
        await session.execute(_FILL_RANGE, {"id_from": id_range[0], "id_to": id_range[1]})
    else:
        await session.execute(_FILL_IDS, {"ids": list(ids)})
