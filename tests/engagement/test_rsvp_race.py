"""Twenty RSVPs racing for five places, on twenty real connections that each commit: exactly five get a place and
fifteen the waiting list. The activity row is held locked until every RSVP is waiting on it (seen in
pg_stat_activity), so all twenty really contend."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.apikeys import service as apikeys_service
from app.core.db import create_sessionmaker, server_settings
from app.main import create_app
from tests.factories import customer_body, delete_customers

RACERS, PLACES = 20, 5


@pytest.fixture
async def race(database_url, test_settings):
    engine = create_async_engine(
        database_url,
        pool_size=RACERS + 2,
        hide_parameters=True,
        connect_args={"server_settings": server_settings(test_settings)},
    )
    tag = uuid.uuid4().hex[:8]
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        keys = {
            role: await apikeys_service.create_api_key(
                session, f"rsvp-{role}-{tag}", role, test_settings.api_key_pepper
            )
            for role in ("admin", "app")
        }
        await session.commit()
    state = {
        "engine": engine,
        "app": create_app(test_settings, sessionmaker=sessionmaker),
        "tag": tag,
        "headers": {role: {"X-API-Key": key} for role, (_, key) in keys.items()},
        "customers": [f"RSVP-{tag}-{i}" for i in range(RACERS)],
        "activity": f"race_{tag}",
    }
    yield state
    async with engine.begin() as conn:
        ids = text("SELECT id FROM customer WHERE external_id = ANY(:ids)")
        await conn.execute(
            text(f"DELETE FROM webhook_event WHERE customer_id IN ({ids.text})"), {"ids": state["customers"]}
        )
        await conn.execute(text("DELETE FROM activity WHERE key = :key"), {"key": state["activity"]})
        await delete_customers(conn, "external_id = ANY(:ids)", {"ids": state["customers"]})
        await conn.execute(text("DELETE FROM audit_event WHERE actor LIKE :actor"), {"actor": f"rsvp-%-{tag}"})
        await conn.execute(text("DELETE FROM api_key WHERE id = ANY(:ids)"), {"ids": [r.id for r, _ in keys.values()]})
    await engine.dispose()


def _client(app) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://tierwise.test", timeout=60)


async def _waiting_on_locks(conn) -> int:
    """Backends waiting on a lock now (a new transaction each time: pg_stat_activity is a snapshot per transaction)."""
    try:
        return await conn.scalar(
            text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await conn.rollback()


async def test_twenty_concurrent_rsvps_take_exactly_five_places(race):
    admin, app_key = race["headers"]["admin"], race["headers"]["app"]
    key, customers = race["activity"], race["customers"]
    start = datetime.now(UTC) + timedelta(days=3)
    async with _client(race["app"]) as client:
        for customer in customers:
            response = await client.put(f"/v1/customers/{customer}", json=customer_body(), headers=admin)
            assert response.status_code == 201, response.text
        body = {
            "key": key,
            "name": "Race",
            "kind": "lecture",
            "owner_team": "t",
            "audience": {"always": True},
            "channel": "online",
            "capacity": PLACES,
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=1)).isoformat(),
        }
        assert (await client.post("/v1/activities", json=body, headers=admin)).status_code == 201
        invited = await client.post(
            f"/v1/activities/{key}/invitations", json={"customer_ids": customers, "channel": "mobile"}, headers=admin
        )
        assert invited.json()["invited"] == RACERS, invited.text

    clients = [_client(race["app"]) for _ in range(RACERS)]
    async with race["engine"].connect() as holder, race["engine"].connect() as watcher:
        await holder.execute(text("SELECT 1 FROM activity WHERE key = :key FOR UPDATE"), {"key": key})
        tasks = [
            asyncio.create_task(
                c.post(
                    f"/v1/activities/{key}/participants/{customer}/rsvp",
                    json={"answer": "accept", "channel": "mobile"},
                    headers=app_key,
                )
            )
            for c, customer in zip(clients, customers, strict=True)
        ]
        async with asyncio.timeout(60):
            while await _waiting_on_locks(watcher) < RACERS:
                assert not any(t.done() for t in tasks), [t.result().text for t in tasks if t.done()]
                await asyncio.sleep(0.02)  # polling the condition, not timing the race
        await holder.commit()  # release: the twenty go one by one
        responses = await asyncio.gather(*tasks)
    for c in clients:
        await c.aclose()

    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    states = sorted(r.json()["state"] for r in responses)
    assert states == ["accepted"] * PLACES + ["waitlisted"] * (RACERS - PLACES)
    async with race["engine"].connect() as conn:
        held = await conn.scalar(
            text(
                "SELECT count(*) FROM activity_participation p JOIN activity a ON a.id = p.activity_id "
                "WHERE a.key = :key AND p.state = 'accepted'"
            ),
            {"key": key},
        )
    assert held == PLACES
