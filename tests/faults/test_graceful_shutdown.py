"""Graceful shutdown: the live server told to stop (SIGTERM) while a batch is in flight finishes that request,
commits its rows, and exits cleanly."""

import asyncio
import signal
from datetime import UTC, datetime, timedelta

import asyncpg
import httpx

from tests.factories import customer_body
from tests.faults.live import LiveServer, prepare_database, waiting_on_locks

EVENTS = 2000


async def test_sigterm_lets_the_in_flight_batch_finish_and_commit(cluster):
    dsn, key = await prepare_database(cluster.url(), customers=0)
    server = LiveServer(dsn).start()
    headers = {"X-API-Key": key}
    direct = await asyncpg.connect(dsn)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            assert (await client.put("/v1/customers/SHUT-1", json=customer_body(), headers=headers)).status_code == 201
            # Hold the customer's row so the batch is surely in flight (waiting inside its transaction) at SIGTERM.
            holder = direct.transaction()
            await holder.start()
            await direct.execute("SELECT 1 FROM customer WHERE external_id = 'SHUT-1' FOR UPDATE")
            when = datetime.now(UTC) - timedelta(hours=1)
            batch = {
                "events": [
                    {
                        "type": "login",
                        "event_id": f"shut-{i}",
                        "customer_id": "SHUT-1",
                        "occurred_at": (when + timedelta(milliseconds=i)).isoformat(),
                    }
                    for i in range(EVENTS)
                ]
            }
            in_flight = asyncio.create_task(client.post("/v1/events", json=batch, headers=headers))
            await waiting_on_locks(dsn, 1)
            server.process.send_signal(signal.SIGTERM)
            await asyncio.sleep(0.5)
            assert server.process.poll() is None, "the server exited with a request in flight"
            await holder.rollback()
            response = await in_flight
            assert response.status_code == 200, response.text
            assert response.json()["recorded"] == EVENTS
        # uvicorn shuts down, then re-raises the SIGTERM it caught: death by that signal is the clean exit.
        assert await asyncio.to_thread(server.process.wait, 30) in (0, -signal.SIGTERM)
        assert await direct.fetchval("SELECT count(*) FROM customer_event WHERE event_id LIKE 'shut-%'") == EVENTS
    finally:
        server.stop()
        await direct.close()
    assert server.errors() == []
