"""Cursor pagination, the one style of every list: `?cursor=&limit=` in, `Page{items, next_cursor}` out.

Cursors are the sort key of the last row seen (integers joined by '.', their pattern published), so pages are
stable under inserts. A list adopts it in three lines:

    async def list_things(session: SessionDep, page: PageParams) -> Page[ThingRead]:        # router
        rows = await service.list_things(session, page)
        return Page[ThingRead].of(rows, page, ThingRead.model_validate)

    return list(await session.scalars(keyset(select(Thing), Thing.id, page)))             # service

`keyset` orders by one increasing integer column (newest first with descending=True) and fetches limit + 1 rows;
`Page.of` keeps `limit` of them and makes the next cursor from the last. Lists sorted by several columns use
encode_cursor / decode_key_cursor / page_of directly.
"""

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Generic, TypeVar

import sqlalchemy as sa
from fastapi import Depends, Query
from pydantic import BaseModel, Field

from app.core.errors import InvalidInput
from app.core.strict import BIGINT_MAX, ParamInteger

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")

    @classmethod
    def of(
        cls,
        rows: list,
        page: "PageRequest",
        item: Callable[[Any], Any] = lambda row: row,
        *,
        key_of: Callable[[Any], tuple[int, ...]] = lambda row: (row.id,),
    ) -> "Page":
        """The page of rows fetched with `keyset` (limit + 1 of them), each made an item by `item`."""
        rows, next_cursor = page_of(rows, page.limit, key_of=key_of)
        return cls(items=[item(row) for row in rows], next_cursor=next_cursor)

    @classmethod
    def of_sequence(cls, items: Sequence, page: "PageRequest") -> "Page":
        """The page of a short list held in memory (a catalog), in its order: the cursor is the position of the
        last item seen."""
        start = page.after or 0
        rows = list(enumerate(items[start : start + page.limit + 1], start + 1))
        return cls.of(rows, page, lambda row: row[1], key_of=lambda row: (row[0],))


def encode_cursor(*key: int) -> str:
    """The cursor for the sort key of the last row seen (one or more integers, joined by '.')."""
    return ".".join(str(k) for k in key)


def cursor_pattern(parts: int, digits: tuple[int, ...] | None = None) -> str:
    """The published form of a cursor of `parts` integers (at most `digits` digits each, 18 by default: a bigint),
    what the schema says being exactly what is accepted."""
    return "^" + r"\.".join(f"[0-9]{{1,{width}}}" for width in digits or (18,) * parts) + "$"


def _legacy_key(cursor: str) -> tuple[int, ...]:
    """A cursor handed out before they were plain (base64 of 'k:' and the key), still honoured so that a change
    feed's kept cursor survives the upgrade; not published."""
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    kind, _, value = raw.partition(":")
    if kind != "k":
        raise ValueError
    return tuple(int(v) for v in value.split(","))


def decode_key_cursor(cursor: str | None, parts: int, parameter: str = "cursor") -> tuple[int, ...] | None:
    """The sort key a cursor stands for; 422 naming the parameter when it is not one of ours."""
    if cursor is None:
        return None
    try:
        if re.fullmatch(r"[0-9]+(\.[0-9]+)*", cursor):
            key = tuple(int(v) for v in cursor.split("."))
        else:
            key = _legacy_key(cursor)
        if len(key) != parts or any(not 0 <= k <= BIGINT_MAX for k in key):
            raise ValueError
        return key
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(parameter, "not a cursor returned by this API", location="query") from None


def decode_cursor(cursor: str | None) -> int | None:
    """The id after which an id-ordered page starts."""
    key = decode_key_cursor(cursor, 1)
    return None if key is None else key[0]


def key_cursor_param(parts: int, digits: tuple[int, ...] | None = None) -> Any:
    """The `cursor` query parameter of a list sorted by `parts` integers (decode it with decode_key_cursor). The
    pattern is published, not checked by FastAPI, so that decode_key_cursor also takes the cursors of before."""
    return Annotated[
        str | None,
        Query(
            max_length=64,
            description="The `next_cursor` of the previous page.",
            json_schema_extra={"pattern": cursor_pattern(parts, digits)},
        ),
    ]


CursorParam = key_cursor_param(1)
LimitParam = Annotated[ParamInteger(1, MAX_PAGE_SIZE), Query(description="Page size.")]


def page_of(rows: list, limit: int, *, key_of=lambda row: (row.id,)) -> tuple[list, str | None]:
    """Split rows fetched with limit + 1 into the page and the cursor of the next page (None on the last)."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(*key_of(rows[-1]))
    return rows, None


@dataclass(frozen=True)
class PageRequest:
    """A list request's page: the key after which it starts (None: the first page) and its size."""

    after: int | None
    limit: int


def page_request(cursor: CursorParam = None, limit: LimitParam = DEFAULT_PAGE_SIZE) -> PageRequest:
    return PageRequest(after=decode_cursor(cursor), limit=limit)


PageParams = Annotated[PageRequest, Depends(page_request)]
"""The `cursor` and `limit` query parameters of a list, decoded (422 naming `cursor` when it is not ours)."""


def keyset(query, column, page: PageRequest, *, descending: bool = False):
    """`query` restricted to the page: rows after the cursor in `column` order (an increasing integer), limit + 1."""
    if page.after is not None:
        # The cursor as a bigint, whatever the column's type: every cursor the published pattern allows compares
        # (an int4 column past its range is simply past every row), never a database range error.
        after = sa.literal(page.after, sa.BigInteger)
        query = query.where(column < after if descending else column > after)
    return query.order_by(column.desc() if descending else column).limit(page.limit + 1)
