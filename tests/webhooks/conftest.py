"""Webhook fixtures: data that really commits (the worker reads it on its own connections), a real receiver on
loopback, and worker settings with short timings. Each test removes what it made."""

import asyncio
import time
import uuid

import httpx
import pytest
from sqlalchemy import text

from app.apikeys import service as apikeys_service
from app.core.db import create_sessionmaker
from app.main import create_app
from app.webhooks import outbox
from app.webhooks.delivery import DeliveryWorker
from bench.webhook_receiver import Receiver


@pytest.fixture
def fast(test_settings):
    """Worker settings scaled down: 20 ms polls, backoff up to 0.2 s; a 2 s timeout (the machine may be busy)."""
    return test_settings.model_copy(
        update={
            "webhook_poll_seconds": 0.02,
            "webhook_timeout_s": 2.0,
            "webhook_backoff_base_s": 0.01,
            "webhook_backoff_max_s": 0.2,
            "webhook_max_attempts": 100,
            "webhook_concurrency": 8,
        }
    )


class Committed:
    """An app whose requests commit, an admin key, and helpers that commit; cleans up by ids."""

    def __init__(self, engine, settings, sessionmaker, key: str, key_id: int, tag: str) -> None:
        self.engine, self.settings, self.sessionmaker = engine, settings, sessionmaker
        self.headers, self.key_id, self.tag = {"X-API-Key": key}, key_id, tag
        self.app = create_app(settings, sessionmaker=sessionmaker)
        self.subscriptions: list[int] = []

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, raise_app_exceptions=False),
            base_url="http://tierwise.test",
            timeout=30,
        )

    async def subscribe(self, url: str, event_types=("complaint.status_changed",), **extra) -> dict:
        async with self.client() as client:
            response = await client.post(
                "/v1/webhooks", headers=self.headers, json={"url": url, "event_types": list(event_types), **extra}
            )
        assert response.status_code == 201, response.text
        self.subscriptions.append(response.json()["id"])
        return response.json()

    async def emit(self, customer_id: int, to_status: str, complaint_id: int = 1) -> str:
        """One complaint.status_changed event for a (made-up) customer id, committed; its event id."""
        async with self.sessionmaker() as session, session.begin():
            event_id = await outbox.emit(
                session,
                "complaint.status_changed",
                {
                    "complaint_id": complaint_id,
                    "customer_id": f"C{customer_id}",
                    "category": "fees",
                    "from_status": None,
                    "to_status": to_status,
                    "at": "2026-12-01T10:00:00Z",
                },
                customer_id=customer_id,
            )
        return str(event_id)

    async def scalar(self, sql: str, **params):
        async with self.engine.connect() as connection:
            return await connection.scalar(text(sql), params)

    def worker(self, settings=None, sessionmaker=None) -> DeliveryWorker:
        return DeliveryWorker(settings or self.settings, sessionmaker or self.sessionmaker)


@pytest.fixture
async def committed(engine, fast):
    sessionmaker = create_sessionmaker(engine)
    tag = uuid.uuid4().hex[:8]
    async with sessionmaker() as session:
        row, key = await apikeys_service.create_api_key(session, f"hooks-{tag}", "admin", fast.api_key_pepper)
        await session.commit()
    first_event = await _scalar(engine, "SELECT coalesce(max(id), 0) FROM webhook_event")
    state = Committed(engine, fast, sessionmaker, key, row.id, tag)
    yield state
    async with engine.begin() as conn:
        await conn.execute(  # the log has no foreign key to the (partitioned) deliveries, so no cascade
            text(
                "DELETE FROM webhook_attempt WHERE delivery_id IN "
                "(SELECT id FROM webhook_delivery WHERE subscription_id = ANY(:ids))"
            ),
            {"ids": state.subscriptions},
        )
        await conn.execute(text("DELETE FROM webhook_subscription WHERE id = ANY(:ids)"), {"ids": state.subscriptions})
        await conn.execute(text("DELETE FROM webhook_event WHERE id > :first"), {"first": first_event})
        await conn.execute(text("DELETE FROM idempotency_key WHERE api_key_id = :id"), {"id": row.id})
        await conn.execute(text("DELETE FROM audit_event WHERE actor = :actor"), {"actor": f"hooks-{tag}"})
        await conn.execute(text("DELETE FROM api_key WHERE id = :id"), {"id": row.id})


async def _scalar(engine, sql: str):
    async with engine.connect() as connection:
        return await connection.scalar(text(sql))


@pytest.fixture
async def receiver():
    receiver = await Receiver().start()
    yield receiver
    await receiver.stop()


async def wait_for(condition, timeout: float = 20.0, every: float = 0.02):
    """Poll an (async or plain) condition until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(every)
