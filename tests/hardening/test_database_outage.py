"""The database goes away under the running app (a proxy in front of Postgres drops every connection and refuses
new ones): requests get 503 problem+json with Retry-After, /readyz says not ready, a write cut mid-transaction
leaves nothing behind, and the app serves again by itself once the database is back (pool_pre_ping)."""

import asyncio
import time

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from app.apikeys import service as apikeys_service
from app.core.config import Settings
from app.core.db import create_sessionmaker
from app.core.migrations import upgrade_to_head
from app.main import create_app
from app.tiering.policies import load_default_policies
from tests.factories import customer_body
from tests.hardening.tcp_proxy import CuttableProxy

PEPPER = "outage-pepper-0123456789"


async def _prepare(url: str) -> str:
    """Migrate (in a helper thread: alembic runs its own loop), load the default policies and make a key."""
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_async_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            await load_default_policies(session)
            _, key = await apikeys_service.create_api_key(session, "outage-test", "admin", PEPPER)
            await session.commit()
            return key
    finally:
        await engine.dispose()


async def _wait_until_blocked_on_lock(url: str, timeout: float = 10) -> None:
    """Until a tierwise backend waits on a lock (the write is mid-transaction)."""
    conn = await asyncpg.connect(_asyncpg_dsn(url))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            waiting = await conn.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tierwise'"
                                          " AND wait_event_type = 'Lock'")
            if waiting:
                return
            await asyncio.sleep(0.05)
        raise AssertionError("the write never reached the locked table")
    finally:
        await conn.close()


def _asyncpg_dsn(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1


async def test_outage_gives_503_leaves_no_partial_write_and_recovers_without_restart(scratch_database):
    url = scratch_database()
    key = await _prepare(url)
    proxy = CuttableProxy(url)
    await proxy.start()
    settings = Settings(environment="test", database_url=proxy.url_for(url), api_key_pepper=PEPPER,
                        db_pool_timeout_s=2)
    app = create_app(settings)
    headers = {"X-API-Key": key}
    direct = await asyncpg.connect(_asyncpg_dsn(url))  # the test's own line to the database, not through the proxy
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://tierwise.test", timeout=30) as client:
                # Healthy: warm the pool.
                assert (await client.get("/readyz")).status_code == 200
                created = await client.put("/v1/customers/OUT-1", json=customer_body(), headers=headers)
                assert created.status_code == 201, created.text

                # A write cut mid-transaction: the customer row is inserted, then tier assignment waits on a lock
                # the test holds; the database goes away while it waits.
                locker = direct.transaction()
                await locker.start()
                await direct.execute("LOCK TABLE tier_assignment IN ACCESS EXCLUSIVE MODE")
                write = asyncio.create_task(client.put("/v1/customers/OUT-HALF", json=customer_body(),
                                                       headers=headers))
                await _wait_until_blocked_on_lock(url)
                await proxy.cut()
                _assert_unavailable(await write)
                await locker.rollback()

                # While it is away: reads, writes and readiness all say 503, quickly.
                started = time.monotonic()
                _assert_unavailable(await client.get("/v1/customers/OUT-1", headers=headers))
                _assert_unavailable(await client.put("/v1/customers/OUT-2", json=customer_body(), headers=headers))
                ready = await client.get("/readyz")
                assert ready.status_code == 503 and ready.headers["content-type"] == "application/problem+json"
                assert time.monotonic() - started < 10

                # Back: the same app, no restart, serves again within seconds.
                await proxy.restore()
                deadline = time.monotonic() + 15
                while (await client.get("/readyz")).status_code != 200:
                    assert time.monotonic() < deadline, "the app did not recover"
                    await asyncio.sleep(0.2)
                assert (await client.get("/v1/customers/OUT-1", headers=headers)).status_code == 200
                assert (await client.get("/v1/customers/OUT-HALF", headers=headers)).status_code == 404
                assert (await client.get("/v1/customers/OUT-2", headers=headers)).status_code == 404
                retried = await client.put("/v1/customers/OUT-HALF", json=customer_body(), headers=headers)
                assert retried.status_code == 201, retried.text

        # Nothing half-written: exactly the customers whose writes succeeded, each with its tier assignments.
        rows = await direct.fetch("SELECT external_id, (SELECT count(*) FROM tier_assignment a "
                                  "WHERE a.customer_id = c.id) AS tiers FROM customer c ORDER BY external_id")
        assert [r["external_id"] for r in rows] == ["OUT-1", "OUT-HALF"]
        assert rows[0]["tiers"] == rows[1]["tiers"] > 0
    finally:
        await direct.close()
        await proxy.cut()
