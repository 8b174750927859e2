"""Test fixtures: a real Postgres database of the suite's own, migrated to head; each test in a rolled-back
transaction that the app's sessions join with savepoints."""

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession, async_sessionmaker, create_async_engine

from app.apikeys import service as apikeys_service
from app.core.config import Settings
from app.core.db import server_settings
from app.core.embedded import create_database, drop_database, start_embedded_postgres
from app.core.migrations import upgrade_to_head
from app.main import create_app
from tests.factories import WEALTH_GRACE_DAYS, WEALTH_TIERS, add_products

ROLES = ("app", "integration", "admin")


def _server_url() -> str:
    """The Postgres server the suite runs on: TIERWISE_DATABASE_URL, or an embedded one of its own."""
    configured = os.environ.get("TIERWISE_DATABASE_URL")
    if configured:
        return configured
    return start_embedded_postgres(Path(os.environ.get("TIERWISE_TEST_DATA_DIR", ".tierwise/test")))


@pytest.fixture(scope="session")
def test_settings() -> Settings:
    return Settings(environment="test", database_url=None, api_key_pepper="test-pepper-0123456789", tier_run_workers=1)


@pytest.fixture(scope="session")
def scratch_database():
    """A factory of empty databases on the test server (dropped at the end); returns each one's asyncpg URL."""
    server, urls = _server_url(), []

    def create() -> str:
        urls.append(create_database(server, f"tierwise_test_{uuid.uuid4().hex[:10]}"))
        return urls[-1]

    yield create
    for url in urls:
        drop_database(url)


@pytest.fixture(scope="session")
def database_url(scratch_database) -> str:
    """The suite's database, migrated with `alembic upgrade head` (which also tests the migrations)."""
    url = scratch_database()
    upgrade_to_head(url)
    return url


@pytest.fixture(scope="session")
async def engine(database_url, test_settings):
    engine = create_async_engine(
        database_url,
        pool_size=5,
        hide_parameters=True,
        connect_args={"server_settings": server_settings(test_settings)},
    )
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
    return async_sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False, autoflush=False
    )


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
async def routed(test_settings, sessionmaker) -> AsyncIterator[httpx.AsyncClient]:
    """The same app, database and keys with the hot reads off (app/core/hotpath.py): FastAPI's router serves
    every request. Tests hold the hot path to it."""
    app = create_app(test_settings.model_copy(update={"hot_reads": False}), sessionmaker=sessionmaker)
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


@pytest.fixture
async def wealth(client, as_role, session):
    """The test wealth policy (tests.factories.WEALTH_TIERS), active, and the test products."""
    await add_products(session)
    await session.commit()
    admin = as_role("admin")
    created = await client.post(
        "/v1/tier-policies",
        headers=admin,
        json={
            "policy_key": "wealth",
            "name": "Wealth",
            "tiers": WEALTH_TIERS,
            "downgrade_grace_days": WEALTH_GRACE_DAYS,
        },
    )
    assert created.status_code == 201, created.text
    activated = await client.post("/v1/tier-policies/wealth/versions/1/activate", headers=admin)
    assert activated.status_code == 200, activated.text
    return "wealth"
