"""Served lists: every list a customer was shown is stored, so that feedback is attributed to what was seen."""

import asyncio
import os
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import Any

from pydantic_core import to_json
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.recommendations.ranking import RecommendationResult
from app.recommendations.schemas import LIMIT_MAX

RANK_BITS = 4
"""A served item's recommendation_id is its list's id with the item's rank (1..15) in these low bits."""
RANK_MASK = (1 << RANK_BITS) - 1
assert LIMIT_MAX <= RANK_MASK

# Served lists in one statement: a row per list, its items as arrays by rank. Product codes, scores and
# propensities come as the text of an array (scores and propensities their exact decimal text: numeric parses it,
# the same values as Decimals, without building one per item), reasons as one JSON array of each item's reasons.
# One statement, so atomic also on a connection without a transaction.
_RECORD = """
INSERT INTO recommendation_list (id, customer_id, channel, strategy, tier_code, product_codes, scores, propensities,
                                 reasons)
SELECT id, customer_id, channel, strategy, tier_code, product_codes::text[], scores::numeric[],
       propensities::numeric[], reasons::jsonb
FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[],
            $9::text[])
     AS l(id, customer_id, channel, strategy, tier_code, product_codes, scores, propensities, reasons)
"""

# SQL expressions of a recommendation_id (`rid`): the id of its list, and its rank (0 and above the list's length:
# no item). Readers: the feedback intake (app/feedback/service.py) and the view recommendation_item (migration
# d0c0ffee0056).
LIST_OF = (
    "encode(set_byte(uuid_send({rid}), 15, get_byte(uuid_send({rid}), 15) & "
    + str(0xFF ^ RANK_MASK)
    + "), 'hex')::uuid"
)
RANK_OF = "(get_byte(uuid_send({rid}), 15) & " + str(RANK_MASK) + ")"

_ERASE_REASONS = text("""
UPDATE recommendation_list
SET reasons = (SELECT coalesce(jsonb_agg('[]'::jsonb), '[]'::jsonb) FROM jsonb_array_elements(reasons))
WHERE customer_id = :customer_id
""")


async def erase_served_reasons(session: AsyncSession, customer_id: int) -> None:
    """Erasure: the reasons of the lists served to a customer quote their values (balances, age, risk tolerance);
    each item's reasons become empty, the items stay, so that feedback and its counts do not change."""
    await session.execute(_ERASE_REASONS, {"customer_id": customer_id})


def time_ordered_uuid() -> uuid.UUID:
    """A UUID version 7 (RFC 9562): the Unix time in milliseconds, then 74 random bits. Served lists' ids are
    allocated in time order, so their index grows at its right edge instead of touching a random page of an
    index that grows with every list served."""
    random_bits = int.from_bytes(os.urandom(10), "big") >> 6  # 74 bits: 12 before the variant, 62 after it
    return uuid.UUID(
        int=(time.time_ns() // 1_000_000) << 80
        | 0x7 << 76
        | (random_bits >> 62) << 64
        | 0b10 << 62
        | random_bits & (1 << 62) - 1
    )


def new_list_id() -> uuid.UUID:
    """A served list's id: a UUIDv7 with its rank bits zero (70 random bits left)."""
    return uuid.UUID(int=time_ordered_uuid().int & ~RANK_MASK)


def item_ids(list_id: uuid.UUID, count: int) -> list[uuid.UUID]:
    """The recommendation_ids of a list's items, by rank (1..count)."""
    if count > RANK_MASK:
        raise ValueError(f"a served list holds at most {RANK_MASK} items")
    return [uuid.UUID(int=list_id.int | rank) for rank in range(1, count + 1)]


def list_id_of(recommendation_id: uuid.UUID) -> uuid.UUID:
    return uuid.UUID(int=recommendation_id.int & ~RANK_MASK)


def assign_ids(result: RecommendationResult) -> None:
    """Each served item's recommendation_id, given when the list is rendered (before it is written)."""
    result.recommendation_ids = item_ids(new_list_id(), len(result.items))


def _array(values) -> str:
    """The text of a Postgres array of strings, each quoted."""
    return "{" + ",".join('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"' for v in values) + "}"


async def insert_served(connection, lists: list[tuple[RecommendationResult, str]]) -> None:
    """Store served lists (result, channel), their ids assigned, in one statement."""
    columns: list[list[Any]] = [[] for _ in range(9)]
    for result, channel in lists:
        ids, items = result.recommendation_ids, result.items
        if len(ids) != len(items):
            raise ValueError("a served list's ids are not assigned")
        values = (
            list_id_of(ids[0]) if ids else new_list_id(),
            result.customer_id,
            channel,
            result.strategy,
            result.tier,
            _array([item.product.code for item in items]),
            "{" + ",".join([f"{item.score:.6f}" for item in items]) + "}",
            "{" + ",".join([f"{min(item.propensity, 0.999999):.6f}" for item in items]) + "}",
            to_json([item.reasons for item in items]).decode(),
        )
        for column, value in zip(columns, values, strict=True):
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
