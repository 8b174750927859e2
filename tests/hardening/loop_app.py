"""An app on an event loop of its own thread, for sync test drivers (schemathesis, hypothesis): each request runs
inside a connection-level transaction that is rolled back afterwards, on a database seeded once."""

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from app.apikeys import service as apikeys_service
from app.core.config import Settings
from app.core.db import server_settings
from app.main import create_app

BASE_URL = "http://tierwise.test"


class RolledBackApp:
    """create_app() served on a private loop; every `request` sees the seeded database and leaves it unchanged."""

    def __init__(self, database_url: str, settings: Settings) -> None:
        self.settings = settings
        self.app = create_app(settings, sessionmaker=None)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="fuzz-app-loop", daemon=True)
        self.thread.start()
        self.engine = self.run(self._create_engine(database_url))
        self.requests = 0

    async def _create_engine(self, url: str):
        return create_async_engine(
            url, pool_size=2, hide_parameters=True, connect_args={"server_settings": server_settings(self.settings)}
        )

    def run(self, coroutine: Awaitable, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def seed(self, fill: Callable[[AsyncSession], Awaitable[None]]) -> None:
        """Commit data every later request sees."""

        async def go() -> None:
            async with async_sessionmaker(self.engine, expire_on_commit=False)() as session:
                await fill(session)
                await session.commit()

        self.run(go())

    def request(self, role: str, *, with_key: bool = True, **kwargs: Any) -> httpx.Response:
        """Send one request as a fresh key of `role` (none when not with_key), in a transaction rolled back
        afterwards."""
        self.requests += 1
        return self.run(self._request(role, with_key, kwargs))

    async def _request(self, role: str, with_key: bool, kwargs: dict[str, Any]) -> httpx.Response:
        async with self.engine.connect() as connection:
            transaction = await connection.begin()
            try:
                sessionmaker = async_sessionmaker(
                    bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False, autoflush=False
                )
                async with sessionmaker() as session:
                    _, key = await apikeys_service.create_api_key(
                        session, f"fuzz-{role}", role, self.settings.api_key_pepper
                    )
                    await session.commit()
                self.app.state.sessionmaker = sessionmaker
                headers = {**kwargs.pop("headers", {}), **({"X-API-Key": key} if with_key else {})}
                transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False)
                async with httpx.AsyncClient(transport=transport, base_url=BASE_URL, timeout=30) as client:
                    response = await client.request(headers=headers, **kwargs)
                    await response.aread()
                return response
            finally:
                await transaction.rollback()

    def close(self) -> None:
        self.run(self.engine.dispose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
