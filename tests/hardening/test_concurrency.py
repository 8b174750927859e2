"""Races, run truly in parallel: separate connections from the suite's engine, each request its own committed
transaction (no shared test transaction). Each test removes the rows it made, by their ids."""

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from app.apikeys import service as apikeys_service
from app.core.db import create_sessionmaker
from app.main import create_app
from app.tiering.policies import default_policies
from tests.factories import customer_body, delete_customers

CLIENTS = 8


@pytest.fixture
async def committed(engine, test_settings):
    """An app whose every request commits for real, its keys, and a list to note customers and policies to drop."""
    sessionmaker = create_sessionmaker(engine)
    tag = uuid.uuid4().hex[:8]
    async with sessionmaker() as session:
        made = {
            role: await apikeys_service.create_api_key(
                session, f"race-{role}-{tag}", role, test_settings.api_key_pepper
            )
            for role in ("integration", "admin")
        }
        await session.commit()
    app = create_app(test_settings, sessionmaker=sessionmaker)
    state = {
        "app": app,
        "tag": tag,
        "headers": {role: {"X-API-Key": key} for role, (_, key) in made.items()},
        "customers": [],
        "policies": [],
    }
    yield state
    async with engine.begin() as conn:
        await delete_customers(conn, "external_id = ANY(:ids)", {"ids": state["customers"]})
        await conn.execute(text("DELETE FROM tier_policy WHERE key = ANY(:keys)"), {"keys": state["policies"]})
        await conn.execute(text("DELETE FROM audit_event WHERE actor LIKE :actor"), {"actor": f"race-%-{tag}"})
        await conn.execute(text("DELETE FROM api_key WHERE id = ANY(:ids)"), {"ids": [r.id for r, _ in made.values()]})


def _clients(app, n: int) -> list[httpx.AsyncClient]:
    return [
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://tierwise.test",
            timeout=30,
        )
        for _ in range(n)
    ]


async def _all_at_once(app, n: int, call) -> list[httpx.Response]:
    clients = _clients(app, n)
    try:
        return list(await asyncio.gather(*(call(client) for client in clients)))
    finally:
        for client in clients:
            await client.aclose()


async def test_concurrent_upserts_of_one_customer_make_one_row_one_201(committed, engine):
    external_id = f"RACE-{committed['tag']}"
    committed["customers"].append(external_id)
    headers = committed["headers"]["integration"]
    responses = await _all_at_once(
        committed["app"],
        CLIENTS,
        lambda c: c.put(
            f"/v1/customers/{external_id}", json=customer_body(display_name="Race Person"), headers=headers
        ),
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (CLIENTS - 1) + [201], [r.text for r in responses if r.status_code >= 300]
    async with engine.connect() as conn:
        rows = await conn.scalar(text("SELECT count(*) FROM customer WHERE external_id = :id"), {"id": external_id})
    assert rows == 1


async def test_concurrent_activation_of_two_versions_leaves_exactly_one_active(committed, engine):
    key = f"race{committed['tag']}"
    committed["policies"].append(key)
    admin = committed["headers"]["admin"]
    body = default_policies()[0].model_dump(mode="json", exclude_none=True) | {"policy_key": key}
    async with _clients(committed["app"], 1)[0] as client:
        assert (await client.post("/v1/tier-policies", json=body, headers=admin)).status_code == 201
        for _ in range(3):  # versions 2, 3, 4
            added = await client.post(f"/v1/tier-policies/{key}/versions", json={"copy_from": 1}, headers=admin)
            assert added.status_code == 201, added.text
    for pair in ((1, 2), (3, 4), (2, 3)):  # drafts against drafts, then versions that have been active before
        versions = iter(pair)
        responses = await _all_at_once(
            committed["app"],
            2,
            lambda c, versions=versions: c.post(
                f"/v1/tier-policies/{key}/versions/{next(versions)}/activate", headers=admin
            ),
        )
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 409} and 200 in statuses, [r.text for r in responses]
        async with engine.connect() as conn:
            active = (
                (
                    await conn.execute(
                        text(
                            "SELECT v.version FROM tier_policy_version v JOIN tier_policy p ON p.id = v.policy_id "
                            "WHERE p.key = :key AND v.status = 'active'"
                        ),
                        {"key": key},
                    )
                )
                .scalars()
                .all()
            )
        assert len(active) == 1 and active[0] in pair


async def test_the_same_event_batch_sent_by_several_clients_is_counted_once(committed, engine):
    external_id = f"RACE-EV-{committed['tag']}"
    committed["customers"].append(external_id)
    headers = committed["headers"]["integration"]
    async with _clients(committed["app"], 1)[0] as client:
        assert (
            await client.put(f"/v1/customers/{external_id}", json=customer_body(), headers=headers)
        ).status_code == 201
    when = datetime.now(UTC) - timedelta(hours=2)
    events = [
        {
            "type": "transaction",
            "event_id": f"race-{committed['tag']}-{i}",
            "customer_id": external_id,
            "occurred_at": (when + timedelta(seconds=i)).isoformat(),
            "amount": "10.00",
            "direction": "debit",
            "channel": "card",
        }
        for i in range(50)
    ]
    events.append(
        {
            "type": "login",
            "event_id": f"race-{committed['tag']}-login",
            "customer_id": external_id,
            "occurred_at": when.isoformat(),
        }
    )
    responses = await _all_at_once(
        committed["app"], CLIENTS, lambda c: c.post("/v1/events", json={"events": events}, headers=headers)
    )
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert sum(r.json()["recorded"] for r in responses) == len(events)
    assert sum(r.json()["duplicates"] for r in responses) == len(events) * (CLIENTS - 1)
    async with engine.connect() as conn:
        stored = await conn.scalar(
            text(
                "SELECT count(*) FROM customer_event e JOIN customer c ON c.id = e.customer_id "
                "WHERE c.external_id = :id"
            ),
            {"id": external_id},
        )
    assert stored == len(events)
    async with _clients(committed["app"], 1)[0] as client:
        metrics = (await client.get(f"/v1/customers/{external_id}", headers=headers)).json()["metrics"]
    assert (metrics["txn_count_90d"], metrics["txn_amount_90d"], metrics["logins_30d"]) == (50, "500.00", 1)
