"""The recommendations' fallback: a service message (e.g. "talk to your adviser") a response carries, marked as such,
instead of an empty list when every product was filtered out; stored as data (one row, its words by language) and
switched on or off by an admin. Read with the candidates, in the same statement, only when there are none: the
common response does not pay for it, and an empty one takes no second round trip."""

import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.i18n import pick
from app.recommendations.models import RecommendationFallback

_TABLE = RecommendationFallback.__table__


async def get_fallback(session: AsyncSession, *, lock: bool = False):
    statement = select(_TABLE.c.enabled, _TABLE.c.code, _TABLE.c.texts).where(_TABLE.c.id == 1)
    return (await session.execute(statement.with_for_update() if lock else statement)).one()


async def replace_fallback(session: AsyncSession, *, enabled: bool, code: str, texts: dict[str, str]) -> None:
    await session.execute(update(_TABLE).where(_TABLE.c.id == 1).values(enabled=enabled, code=code, texts=texts))


def served_fallback(fallback: list[str] | None, language: str, default_language: str) -> dict[str, Any] | None:
    """The fallback item of an empty response, in `language`, from the statement's `fallback` column (its code and
    texts, read with the candidates only when there are none: app/recommendations/queries.py); None when it is
    off."""
    if fallback is None:
        return None
    code, texts = fallback
    text = pick(json.loads(texts), language, default_language)
    if text is None:
        return None
    return {"kind": "service_message", "code": code, "text": text}
