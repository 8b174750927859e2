"""Served lists: every list a customer was shown is stored, so that feedback is attributed to what was seen."""

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from pydantic_core import to_json
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.recommendations.models import RecommendationItem
from app.recommendations.ranking import RecommendationResult

# Served lists and their items in one statement: a list per element of $1..$4, its items in $5..$11 (n: the
# list's position in $1..$4). One statement, so it is atomic also on a connection without a transaction. The list
# ids' sequence is looked up once per statement (an InitPlan), not once per list (pg_get_serial_sequence reads the
# catalog); scores and propensities come as their exact decimal text (numeric parses it: the same values as
# Decimals, without building one per item), reasons as JSON text.
_RECORD = """
WITH lists AS (
    SELECT nextval((SELECT pg_get_serial_sequence('recommendation_list', 'id'))::regclass) AS id, l.*
    FROM unnest($1::bigint[], $2::text[], $3::text[], $4::text[])
         WITH ORDINALITY AS l(customer_id, channel, strategy, tier_code, n)
), served AS (
    INSERT INTO recommendation_list (id, customer_id, channel, strategy, tier_code)
    SELECT id, customer_id, channel, strategy, tier_code FROM lists
)
INSERT INTO recommendation_item (recommendation_id, list_id, customer_id, product_code, tier_code, rank, score,
                                 propensity, strategy, reasons)
SELECT i.recommendation_id, lists.id, lists.customer_id, i.product_code, lists.tier_code, i.rank, i.score,
       i.propensity, lists.strategy, i.reasons
FROM unnest($5::bigint[], $6::uuid[], $7::text[], $8::smallint[], $9::text[]::numeric[], $10::text[]::numeric[],
            $11::text[]::jsonb[])
     AS i(n, recommendation_id, product_code, rank, score, propensity, reasons)
JOIN lists ON lists.n = i.n
"""


async def erase_served_reasons(session: AsyncSession, customer_id: int) -> None:
    """Erasure: the reasons of the lists served to a customer quote their values (balances, age, risk tolerance);
    the items stay, so that feedback and its counts do not change."""
    await session.execute(
        update(RecommendationItem).where(RecommendationItem.customer_id == customer_id).values(reasons=[])
    )


def time_ordered_uuid() -> uuid.UUID:
    """A UUID version 7 (RFC 9562): the Unix time in milliseconds, then 74 random bits. Served items' ids are
    allocated in time order, so their primary key grows at its right edge instead of touching a random page of an
    index that grows with every list served."""
    random_bits = int.from_bytes(os.urandom(10), "big") >> 6  # 74 bits: 12 before the variant, 62 after it
    return uuid.UUID(
        int=(time.time_ns() // 1_000_000) << 80
        | 0x7 << 76
        | (random_bits >> 62) << 64
        | 0b10 << 62
        | random_bits & (1 << 62) - 1
    )


def assign_ids(result: RecommendationResult) -> None:
    """Each served item's recommendation_id, given when the list is rendered (before it is written)."""
    result.recommendation_ids = [time_ordered_uuid() for _ in result.items]


async def insert_served(connection, lists: list[tuple[RecommendationResult, str]]) -> None:
    """Store served lists (result, channel), their ids assigned, in one statement."""
    columns: list[list[Any]] = [[] for _ in range(11)]
    for n, (result, channel) in enumerate(lists, 1):
        list_values = (result.customer_id, channel, result.strategy, result.tier)
        for column, value in zip(columns[:4], list_values, strict=True):
            column.append(value)
        for rank, (rid, item) in enumerate(zip(result.recommendation_ids, result.items, strict=True), 1):
            for column, value in zip(
                columns[4:],
                (
                    n,
                    rid,
                    item.product.code,
                    rank,
                    f"{item.score:.6f}",
                    f"{min(item.propensity, 0.999999):.6f}",
                    to_json(item.reasons).decode(),
                ),
                strict=True,
            ):
                column.append(value)
    await connection.execute(_RECORD, *columns)


class ServedLists:
    """Stores what was served, so that feedback is attributed to what the customer actually saw; a request is
    answered only once its list is committed.

    `write`: on a connection inside a transaction (a FastAPI route's session), in that transaction.
    `submit`: on the hot path, grouped. The list is queued and the request gets a future, which it awaits after
    giving its read's connection back to the pool (app/core/hotpath.py: `Answer`), so that a request waiting for
    a commit holds no connection. One writer at a time takes a connection from `connect` (a zero-argument callable
    returning an async context manager of a connection without a transaction) and writes every list waiting at
    that moment in one statement, then the next group while lists keep coming; under load one statement commits
    many lists. If a grouped write fails, its lists are written one by one, so one bad list fails only its own
    request."""

    def __init__(self, connect: Callable[[], AbstractAsyncContextManager] | None = None) -> None:
        self._connect = connect
        self._waiting: list[tuple[tuple[RecommendationResult, str], asyncio.Future]] = []
        self._writer: asyncio.Task | None = None
        self.statements = 0

    async def write(self, connection, result: RecommendationResult, channel: str) -> None:
        assign_ids(result)
        self.statements += 1
        await insert_served(connection, [(result, channel)])

    def submit(self, result: RecommendationResult, channel: str) -> asyncio.Future:
        """Queue a list for the next grouped write, its ids assigned; the future is done once it is committed."""
        assign_ids(result)
        done = asyncio.get_running_loop().create_future()
        self._waiting.append(((result, channel), done))
        if self._writer is None:
            self._writer = asyncio.get_running_loop().create_task(self._write_waiting())
        return done

    async def _write_waiting(self) -> None:
        batch: list = []
        try:
            while self._waiting:
                async with self._connect() as connection:
                    while self._waiting:
                        batch, self._waiting = self._waiting, []
                        await self._write(connection, batch)
                        batch = []
        except BaseException as exc:  # no connection, or cancelled mid-write: whether `batch` was committed is unknown
            failed, self._waiting = [*batch, *self._waiting], []
            error = exc if isinstance(exc, Exception) else RuntimeError("the write of the served list was interrupted")
            for _, done in failed:
                _settle(done, error)
            if not isinstance(exc, Exception):
                raise
        finally:
            self._writer = None

    async def _write(self, connection, batch) -> None:
        try:
            self.statements += 1
            await insert_served(connection, [entry for entry, _ in batch])
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc)
                return
            for entry, done in batch:
                try:
                    self.statements += 1
                    await insert_served(connection, [entry])
                except Exception as one:
                    _settle(done, one)
                else:
                    _settle(done)
        else:
            for _, done in batch:
                _settle(done)


def _settle(done: asyncio.Future, error: BaseException | None = None) -> None:
    """A list's outcome, unless its request stopped waiting (a client gone: the future cancelled)."""
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)
