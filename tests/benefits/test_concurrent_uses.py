"""Concurrent uses of a limited benefit, on real connections that commit: every request is made to wait on the
period's counter row (held locked by another transaction, seen waiting in pg_stat_activity), then released at
once; exactly the uses left succeed, the rest get the 409, and the count never passes the limit."""

import asyncio
import uuid

import httpx
import pytest
from sqlalchemy import text

from app.apikeys import service as apikeys_service
from app.core.db import create_sessionmaker
from app.main import create_app
from tests.factories import WEALTH_TIERS, customer_body, delete_customers

RACERS = 6
LIMIT = 3


@pytest.fixture
async def committed(engine, test_settings):
    sessionmaker = create_sessionmaker(engine)
    tag = uuid.uuid4().hex[:8]
    async with sessionmaker() as session:
        made = {
            role: await apikeys_service.create_api_key(
                session, f"race-{role}-{tag}", role, test_settings.api_key_pepper
            )
            for role in ("app", "integration", "admin")
        }
        await session.commit()
    state = {
        "app": create_app(test_settings, sessionmaker=sessionmaker),
        "tag": tag,
        "policy": f"race{tag}",
        "customer": f"RACE-{tag}",
        "benefit": f"race-{tag}",
        "headers": {role: {"X-API-Key": key} for role, (_, key) in made.items()},
    }
    yield state
    async with engine.begin() as conn:
        customer_id = await conn.scalar(
            text("SELECT id FROM customer WHERE external_id = :id"), {"id": state["customer"]}
        )
        await conn.execute(text("DELETE FROM webhook_event WHERE customer_id = :id"), {"id": customer_id})
        await conn.execute(text("DELETE FROM tier_assignment WHERE customer_id = :id"), {"id": customer_id})
        await conn.execute(text("DELETE FROM tier_transition WHERE customer_id = :id"), {"id": customer_id})
        await delete_customers(conn, "id = :id", {"id": customer_id})
        await conn.execute(text("DELETE FROM benefit WHERE code = :code"), {"code": state["benefit"]})
        await conn.execute(
            text("DELETE FROM tier_run WHERE policy_id IN (SELECT id FROM tier_policy WHERE key = :k)"),
            {"k": state["policy"]},
        )
        await conn.execute(text("DELETE FROM tier_policy WHERE key = :key"), {"key": state["policy"]})
        await conn.execute(text("DELETE FROM audit_event WHERE actor LIKE :actor"), {"actor": f"race-%-{tag}"})
        await conn.execute(text("DELETE FROM api_key WHERE id = ANY(:ids)"), {"ids": [r.id for r, _ in made.values()]})


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://tierwise.test", timeout=30
    )


async def test_concurrent_uses_never_exceed_the_period_limit(committed, engine):
    app, headers = committed["app"], committed["headers"]
    policy, customer, code = committed["policy"], committed["customer"], committed["benefit"]
    async with _client(app) as client:
        created = await client.post(
            "/v1/tier-policies",
            headers=headers["admin"],
            json={"policy_key": policy, "name": "Race", "tiers": WEALTH_TIERS},
        )
        assert created.status_code == 201, created.text
        activated = await client.post(f"/v1/tier-policies/{policy}/versions/1/activate", headers=headers["admin"])
        assert activated.status_code == 200, activated.text
        put = await client.put(f"/v1/customers/{customer}", headers=headers["integration"], json=customer_body())
        assert put.status_code == 201, put.text
        benefit = {
            "code": code,
            "kind": "service",
            "value": str(LIMIT),
            "unit": "count",
            "usage_limit": LIMIT,
            "usage_period": "month",
            "channels": ["mobile"],
            "texts": {"en": {"name": "Race lounge"}},
            "attachments": [{"policy_key": policy, "tier": "mass"}],
        }
        assert (await client.post("/v1/benefits", headers=headers["admin"], json=benefit)).status_code == 201
        first = await client.post(f"/v1/customers/{customer}/benefits/{code}/uses", headers=headers["app"], json={})
        assert first.status_code == 201, first.text  # the period's counter row now exists, used = 1

    async with engine.connect() as blocker, engine.connect() as watcher:
        await blocker.execute(
            text(
                "SELECT used FROM benefit_usage WHERE benefit_id = (SELECT id FROM benefit WHERE code = :code) "
                "FOR UPDATE"
            ),
            {"code": code},
        )
        clients = [_client(app) for _ in range(RACERS)]
        racing = [
            asyncio.create_task(
                c.post(f"/v1/customers/{customer}/benefits/{code}/uses", headers=headers["app"], json={})
            )
            for c in clients
        ]
        waiting = 0
        for _ in range(600):  # every racer blocked on the counter row, as the server reports it
            waiting = await watcher.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND query LIKE '%INSERT INTO benefit_usage%'"
                )
            )
            await watcher.commit()
            if waiting == RACERS:
                break
            await asyncio.sleep(0.05)
        assert waiting == RACERS
        await blocker.rollback()
        responses = await asyncio.gather(*racing)
        for c in clients:
            await c.aclose()

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * (LIMIT - 1) + [409] * (RACERS - LIMIT + 1), [r.text for r in responses]
    assert all(r.json()["code"] == "limit_reached" for r in responses if r.status_code == 409)
    async with engine.connect() as conn:
        used = await conn.scalar(
            text("SELECT u.used FROM benefit_usage u JOIN benefit b ON b.id = u.benefit_id WHERE b.code = :code"),
            {"code": code},
        )
        uses = await conn.scalar(
            text("SELECT count(*) FROM benefit_use u JOIN benefit b ON b.id = u.benefit_id WHERE b.code = :code"),
            {"code": code},
        )
        events = await conn.scalar(
            text(
                "SELECT count(*) FROM webhook_event WHERE event_type = 'benefit.used' AND payload->>'benefit_code' = :c"
            ),
            {"c": code},
        )
    assert used == uses == events == LIMIT
