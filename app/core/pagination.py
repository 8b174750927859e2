"""Cursor pagination by a monotonically increasing id: stable under inserts (new rows land after the cursor)."""

import base64
import binascii
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from app.core.errors import InvalidInput
from app.core.strict import BIGINT_MAX, ParamInteger

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


def encode_cursor(*key: int) -> str:
    """An opaque cursor for the sort key of the last row seen (one or more integers)."""
    return base64.urlsafe_b64encode(("k:" + ",".join(str(k) for k in key)).encode()).decode().rstrip("=")


def decode_key_cursor(cursor: str | None, parts: int, parameter: str = "cursor") -> tuple[int, ...] | None:
    """The sort key a cursor stands for; 422 naming the parameter when it is not one of ours."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        key = tuple(int(v) for v in value.split(","))
        if kind != "k" or len(key) != parts or any(not 0 <= k <= BIGINT_MAX for k in key):
            raise ValueError
        return key
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput(parameter, "not a cursor returned by this API", location="query") from None


def decode_cursor(cursor: str | None) -> int | None:
    """The id after which an id-ordered page starts."""
    key = decode_key_cursor(cursor, 1)
    return None if key is None else key[0]


CursorParam = Annotated[str | None, Query(max_length=64, description="Opaque cursor from the previous page.")]
LimitParam = Annotated[ParamInteger(1, MAX_PAGE_SIZE), Query(description="Page size.")]


def page_of(rows: list, limit: int, *, key_of=lambda row: (row.id,)) -> tuple[list, str | None]:
    """Split rows fetched with limit + 1 into the page and the cursor of the next page (None on the last)."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(*key_of(rows[-1]))
    return rows, None
