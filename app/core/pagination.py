"""Cursor pagination by a monotonically increasing id: stable under inserts (new rows land after the cursor)."""

import base64
import binascii
from typing import Annotated, Generic, TypeVar

from fastapi import Query
from pydantic import BaseModel, Field

from app.core.errors import InvalidInput

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(description="Pass as `cursor` to get the next page; null on the last page.")


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"id:{last_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id after which the page starts; 422 naming the `cursor` parameter when it is not ours."""
    if cursor is None:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        kind, _, value = raw.partition(":")
        if kind != "id" or not value.isdigit():
            raise ValueError
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("cursor", "not a cursor returned by this API", location="query") from None


CursorParam = Annotated[str | None, Query(max_length=64, description="Opaque cursor from the previous page.")]
LimitParam = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")]


def page_of(rows: list, limit: int, *, id_of=lambda row: row.id) -> tuple[list, str | None]:
    """Split rows fetched with limit + 1 into the page and the next cursor."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(id_of(rows[-1]))
    return rows, None
