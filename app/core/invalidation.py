"""Caches dropped on every instance when what they hold changes, through Postgres LISTEN/NOTIFY.

A write that makes a cache stale calls `notify(session, topic)` in its own transaction: Postgres delivers the
notification when that transaction commits (never when it rolls back). Every process runs an `InvalidationListener`
on an asyncpg connection of its own (outside the pools) that LISTENs on CHANNEL and calls the topic's handler, which
drops the cache. When the connection is lost the listener connects again (every `retry` seconds) and, once
listening, drops every cache: a notification sent meanwhile was missed. The caches keep their own time limits too,
so a process that cannot listen serves nothing older than those.

Topics: API_KEYS (a key revoked: the principal cache, app.apikeys.service.PrincipalCache) and RANKING_STATS (the
statistics refreshed, another ranker model served: the recommender's statistics). The product catalog and policy
versions need none: a recommendation reads the catalog's version with every customer and compiles it again when it
changed, and compiled policy versions are cached by (version id, updated_at), which an edit changes.
"""

import asyncio
import contextlib
import logging
from collections.abc import Callable

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

log = logging.getLogger(__name__)

CHANNEL = "tierwise_invalidate"
API_KEYS = "api_keys"
RANKING_STATS = "ranking_stats"
TOPICS = (API_KEYS, RANKING_STATS)


async def notify(session: AsyncSession, topic: str) -> None:
    """Tell every instance, when this transaction commits, that `topic`'s caches are stale."""
    if topic not in TOPICS:
        raise ValueError(f"unknown invalidation topic {topic!r}")
    await session.execute(text("SELECT pg_notify(:channel, :topic)"), {"channel": CHANNEL, "topic": topic})


class InvalidationListener:
    """LISTENs on CHANNEL on a connection of its own and calls `handlers[topic]()` for each notification."""

    def __init__(self, dsn: str, handlers: dict[str, Callable[[], None]], retry: float = 1.0) -> None:
        self.dsn, self.handlers, self.retry = dsn, handlers, retry
        self.listening = asyncio.Event()  # set while LISTENing (tests wait for it)
        self.connection: asyncpg.Connection | None = None

    async def run(self) -> None:
        """Listen until cancelled, connecting again whenever the connection is lost."""
        try:
            while True:
                try:
                    await self._listen()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                    if self.listening.is_set():
                        reason = {"reason": type(exc).__name__}
                        log.warning("cache invalidation: connection lost, listening again", extra=reason)
                finally:
                    self.listening.clear()
                    if self.connection is not None:
                        self.connection.terminate()
                        self.connection = None
                await asyncio.sleep(self.retry)
        finally:
            self.listening.clear()

    async def _listen(self) -> None:
        self.connection = connection = await asyncpg.connect(self.dsn, timeout=max(self.retry, 5.0))
        lost = asyncio.Event()
        connection.add_termination_listener(lambda _: lost.set())
        await connection.add_listener(CHANNEL, self._received)
        self._drop_all()  # whatever changed while this process was not listening
        self.listening.set()
        while not connection.is_closed():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(lost.wait(), 5.0)
            if not lost.is_set():  # a half-open connection is found by using it
                await connection.fetchval("SELECT 1", timeout=5.0)
        raise asyncpg.InterfaceError("the listening connection closed")

    def _received(self, connection, pid, channel, topic: str) -> None:
        handler = self.handlers.get(topic)
        if handler is not None:
            handler()

    def _drop_all(self) -> None:
        for handler in self.handlers.values():
            handler()
