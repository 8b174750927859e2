"""The recommendations' fallback: a service message (e.g. "talk to your adviser") a response carries, marked as such,
instead of an empty list when every product was filtered out; stored as data (one row, its words by language) and
switched on or off by an admin. Read only for an empty list: the common response does not pay for it."""

import json
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.i18n import pick
from app.recommendations.models import RecommendationFallback

_TABLE = RecommendationFallback.__table__
_READ = "SELECT code, texts::text AS texts FROM recommendation_fallback WHERE id = 1 AND enabled"


async def get_fallback(session: AsyncSession, *, lock: bool = False):
    statement = select(_TABLE.c.enabled, _TABLE.c.code, _TABLE.c.texts).where(_TABLE.c.id == 1)
    return (await session.execute(statement.with_for_update() if lock else statement)).one()


async def replace_fallback(session: AsyncSession, *, enabled: bool, code: str, texts: dict[str, str]) -> None:
    await session.execute(update(_TABLE).where(_TABLE.c.id == 1).values(enabled=enabled, code=code, texts=texts))


async def served_fallback(connection, language: str, default_language: str) -> dict[str, Any] | None:
    """The fallback item of an empty response, in `language` (on an asyncpg connection); None when it is off."""
    row = await connection.fetchrow(_READ)
    if row is None:
        return None
    text = pick(json.loads(row["texts"]), language, default_language)
    if text is None:
        return None
    return {"kind": "service_message", "code": row["code"], "text": text}
