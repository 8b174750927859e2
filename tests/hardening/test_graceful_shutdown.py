"""Graceful shutdown: `tierwise serve` told to stop (SIGTERM) while a batch is in flight finishes that request,
commits its rows, and exits cleanly."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.apikeys import service as apikeys_service
from app.core.db import create_sessionmaker
from app.core.migrations import upgrade_to_head
from bench.harness import ENCRYPTION_KEY, free_port
from tests.factories import customer_body

ROOT = Path(__file__).resolve().parents[2]
PEPPER = "shutdown-pepper-0123456789"
EVENTS = 2000


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _make_key(url: str) -> str:
    engine = create_async_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            _, key = await apikeys_service.create_api_key(session, "shutdown-test", "integration", PEPPER)
            await session.commit()
            return key
    finally:
        await engine.dispose()


async def test_sigterm_lets_the_in_flight_batch_finish_and_commit(scratch_database):
    url = scratch_database()
    await asyncio.to_thread(upgrade_to_head, url)
    key = await _make_key(url)
    port = free_port()
    env = {**os.environ, "TIERWISE_DATABASE_URL": _plain(url), "TIERWISE_API_KEY_PEPPER": PEPPER,
           "TIERWISE_ENCRYPTION_KEY": ENCRYPTION_KEY,
           "TIERWISE_ENVIRONMENT": "production", "TIERWISE_LOG_LEVEL": "WARNING", "TIERWISE_PORT": str(port)}
    server = subprocess.Popen([sys.executable, "-m", "app.cli", "serve"], env=env, cwd=ROOT)
    base, headers = f"http://127.0.0.1:{port}", {"X-API-Key": key}
    direct = await asyncpg.connect(_plain(url))
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and server.poll() is None, "the server did not start"
                await asyncio.sleep(0.2)
            assert (await client.put("/v1/customers/SHUT-1", json=customer_body(), headers=headers)).status_code == 201

            # Hold the customer's row so the batch is surely in flight (waiting inside its transaction) at SIGTERM.
            holder = direct.transaction()
            await holder.start()
            await direct.execute("SELECT 1 FROM customer WHERE external_id = 'SHUT-1' FOR UPDATE")
            when = datetime.now(UTC) - timedelta(hours=1)
            batch = {"events": [{"type": "login", "event_id": f"shut-{i}", "customer_id": "SHUT-1",
                                 "occurred_at": (when + timedelta(milliseconds=i)).isoformat()}
                                for i in range(EVENTS)]}
            in_flight = asyncio.create_task(client.post("/v1/events", json=batch, headers=headers))
            deadline = time.monotonic() + 10
            while not await direct.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                                            "'tierwise' AND wait_event_type = 'Lock'"):
                assert time.monotonic() < deadline, "the batch never reached the database"
                await asyncio.sleep(0.05)
            server.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert server.poll() is None, "the server exited with a request in flight"
            await holder.rollback()
            response = await in_flight
            assert response.status_code == 200, response.text
            assert response.json()["recorded"] == EVENTS
        # uvicorn shuts down, then re-raises the SIGTERM it caught: death by that signal is the clean exit.
        assert await asyncio.to_thread(server.wait, 30) in (0, -signal.SIGTERM)
        stored = await direct.fetchval("SELECT count(*) FROM customer_event WHERE event_id LIKE 'shut-%'")
        assert stored == EVENTS
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
        await direct.close()
