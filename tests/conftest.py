"""Test fixtures: a real Postgres database of the suite's own, migrated to head; each test in a rolled-back
transaction that the app's sessions join with savepoints."""

import asyncio
import concurrent.futures
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker, create_async_engine

from app.apikeys import service as apikeys_service
from app.core.config import Settings
from app.core.db import server_settings
from app.core.embedded import start_embedded_postgres, to_async_url
from app.core.migrations import upgrade_to_head
from app.main import create_app

ROLES = ("app", "integration", "admin")


def _server_url() -> str:
    """The Postgres server the suite runs on: TIERWISE_DATABASE_URL, or an embedded one of its own."""
    configured = os.environ.get("TIERWISE_DATABASE_URL")
    if configured:
        return configured
    return start_embedded_postgres(Path(os.environ.get("TIERWISE_TEST_DATA_DIR", ".tierwise/test")))


def _plain_dsn(url: str, database: str) -> str:
    return make_url(url).set(drivername="postgresql", database=database).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    return Settings(environment="test", database_url=None, api_key_pepper="test-pepper-0123456789")


def _admin_sql(server: str, sql: str) -> None:
    async def run() -> None:
        conn = await asyncpg.connect(_plain_dsn(server, "postgres"))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(run())
    else:  # called from an async test: run on a loop of its own in a helper thread
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pool.submit(asyncio.run, run()).result()


@pytest.fixture(scope="session")
def scratch_database():
    """A factory of empty databases on the test server (dropped at the end); returns each one's asyncpg URL."""
    server, names = _server_url(), []

    def create() -> str:
        name = f"tierwise_test_{uuid.uuid4().hex[:10]}"
        _admin_sql(server, f'CREATE DATABASE "{name}"')
        names.append(name)
        return to_async_url(_plain_dsn(server, name))

    yield create
    for name in names:
        _admin_sql(server, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def database_url(scratch_database) -> str:
    """The suite's database, migrated with `alembic upgrade head` (which also tests the migrations)."""
    url = scratch_database()
    upgrade_to_head(url)
    return url


@pytest.fixture(scope="session")
async def engine(database_url, test_settings):
    engine = create_async_engine(database_url, pool_size=5,
                                 connect_args={"server_settings": server_settings(test_settings)})
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as conn:
        transaction = await conn.begin()
        try:
            yield conn
        finally:
            await transaction.rollback()


@pytest.fixture
def sessionmaker(connection) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False,
                              autoflush=False)


@pytest.fixture
async def session(sessionmaker) -> AsyncIterator[AsyncSession]:
    async with sessionmaker() as session:
        yield session


@pytest.fixture
def app(test_settings, sessionmaker):
    return create_app(test_settings, sessionmaker=sessionmaker)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise.test") as client:
        yield client


@pytest.fixture
async def keys(session, test_settings) -> dict[str, str]:
    """One API key per role: {"app": "tw_...", "integration": ..., "admin": ...}."""
    out = {}
    for role in ROLES:
        _, key = await apikeys_service.create_api_key(session, f"test-{role}", role, test_settings.api_key_pepper)
        out[role] = key
    await session.commit()
    return out


@pytest.fixture
def as_role(keys):
    """Headers for a role: as_role("admin")."""
    return lambda role: {"X-API-Key": keys[role]}
