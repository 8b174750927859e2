"""Idempotency-Key on POSTs that create (app/core/idempotency.py): replay of the first response, 422 for another
body, keys per API key, expiry and purge, sealed storage, and two requests with one key at once on separate
connections (the second waits for the first and replays it, or runs when the first failed)."""

import asyncio
import time
import uuid

import httpx
import pytest
from fastapi import APIRouter, Request
from pydantic import BaseModel
from sqlalchemy import text

from app.apikeys import service as apikeys_service
from app.audit import service as audit_service
from app.core.db import SessionDep, create_sessionmaker
from app.core.errors import InvalidInput
from app.core.idempotency import creates, purge_expired
from app.core.security import Scope, require_scope
from app.main import create_app

HOOK = {"url": "https://hooks.bank.example/tierwise", "event_types": ["tier.upgraded"]}


async def _post(client, headers, body=HOOK, key: str | None = "key-1"):
    return await client.post(
        "/v1/webhooks", json=body, headers={**headers, **({"Idempotency-Key": key} if key else {})}
    )


async def test_a_retry_with_the_same_key_and_body_replays_the_first_response(client, as_role, session):
    admin = as_role("admin")
    first = await _post(client, admin)
    assert first.status_code == 201 and first.headers["Location"] == f"/v1/webhooks/{first.json()['id']}"
    assert "Idempotent-Replayed" not in first.headers
    reordered = {"event_types": ["tier.upgraded"], "url": HOOK["url"]}  # the same JSON, keys in another order
    again = await _post(client, admin, reordered)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and again.headers["Location"] == first.headers["Location"]
    assert again.headers["ETag"] == first.headers["ETag"]  # the other headers the endpoint set, replayed too
    assert await session.scalar(text("SELECT count(*) FROM webhook_subscription")) == 1
    without_key = await _post(client, admin, key=None)  # no key: a second subscription, with its own Location
    assert without_key.status_code == 201 and without_key.json()["id"] != first.json()["id"]
    assert without_key.headers["Location"] == f"/v1/webhooks/{without_key.json()['id']}"


async def test_the_same_key_with_another_body_is_a_422_naming_the_header(client, as_role):
    admin = as_role("admin")
    assert (await _post(client, admin)).status_code == 201
    other = await _post(client, admin, {**HOOK, "event_types": ["tier.downgraded"]})
    assert other.status_code == 422 and other.headers["content-type"] == "application/problem+json"
    assert other.json()["errors"][0]["parameter"] == "Idempotency-Key"
    assert other.json()["errors"][0]["location"] == "header"
    bad = await _post(client, admin, key="x" * 256)
    assert bad.status_code == 422 and bad.json()["errors"][0]["parameter"] == "Idempotency-Key"


async def test_keys_of_different_api_keys_never_meet(client, as_role, session, test_settings):
    _, other_admin = await apikeys_service.create_api_key(session, "other-admin", "admin", test_settings.api_key_pepper)
    await session.commit()
    mine = await _post(client, as_role("admin"))
    theirs = await _post(client, {"X-API-Key": other_admin}, {**HOOK, "event_types": ["tier.at_risk"]})
    assert mine.status_code == theirs.status_code == 201 and mine.json()["id"] != theirs.json()["id"]


async def test_an_expired_key_is_a_new_key_and_the_purge_removes_it(client, as_role, session):
    admin = as_role("admin")
    first = await _post(client, admin)
    await session.execute(text("UPDATE idempotency_key SET expires_at = now() - interval '1 second'"))
    await session.commit()
    again = await _post(client, admin, {**HOOK, "event_types": ["benefit.used"]})
    assert again.status_code == 201 and again.json()["id"] != first.json()["id"]
    await session.execute(text("UPDATE idempotency_key SET expires_at = now() - interval '1 second'"))
    assert await purge_expired(session) == {"idempotency_keys_purged": 1}
    assert await session.scalar(text("SELECT count(*) FROM idempotency_key")) == 0


async def test_the_stored_response_is_sealed_so_the_secret_is_not_readable_at_rest(client, as_role, session):
    created = await _post(client, as_role("admin"))
    stored = await session.scalar(text("SELECT response FROM idempotency_key"))
    assert created.json()["secret"].encode() not in stored and b"hooks.bank.example" not in stored


# ---- a route of our own, to hold requests in flight and to fail on purpose ------------------------------------


class Thing(BaseModel):
    id: int
    name: str


class ThingIn(BaseModel):
    name: str
    model_config = {"json_schema_extra": {"examples": [{"name": "x"}]}}


def _thing_app(settings, sessionmaker, behaviour: dict):
    router = APIRouter(prefix="/test/things", dependencies=[require_scope(Scope.ADMIN)])

    @creates(router, "", location="/test/things/{id}", response_model=Thing)
    async def create_thing(body: ThingIn, session: SessionDep, request: Request) -> Thing:
        event = await audit_service.record(
            session, request.state.principal.name, "thing.create", "thing", body.name, None, None
        )
        behaviour["calls"] += 1
        await asyncio.sleep(behaviour["sleep"])
        if behaviour["fail_first"] and behaviour["calls"] == 1:
            raise InvalidInput("/name", "refused the first time")
        return Thing(id=event.id, name=body.name)

    app = create_app(settings, sessionmaker=sessionmaker)
    app.include_router(router)
    return app


@pytest.fixture
async def things(engine, test_settings):
    """The thing route on an app whose requests commit (each on its own pooled connection)."""
    tag = uuid.uuid4().hex[:8]
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        row, key = await apikeys_service.create_api_key(session, f"things-{tag}", "admin", test_settings.api_key_pepper)
        await session.commit()
    behaviour = {"calls": 0, "sleep": 0.0, "fail_first": False}
    app = _thing_app(test_settings, sessionmaker, behaviour)
    yield app, {"X-API-Key": key}, behaviour, f"things-{tag}"
    async with engine.begin() as conn:
        await conn.execute(text("DELETE FROM idempotency_key WHERE api_key_id = :id"), {"id": row.id})
        await conn.execute(text("DELETE FROM audit_event WHERE actor = :actor"), {"actor": f"things-{tag}"})
        await conn.execute(text("DELETE FROM api_key WHERE id = :id"), {"id": row.id})


async def _at_once(app, headers, n: int = 2) -> list[tuple[httpx.Response, float]]:
    async def one(delay: float):
        await asyncio.sleep(delay)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
            base_url="http://tierwise.test",
            timeout=30,
        ) as client:
            response = await client.post(
                "/test/things", json={"name": "one"}, headers={**headers, "Idempotency-Key": "same"}
            )
            return response, time.monotonic()

    return list(await asyncio.gather(*(one(0.01 * i) for i in range(n))))


async def _rows(engine, actor: str) -> int:
    async with engine.connect() as connection:
        return await connection.scalar(text("SELECT count(*) FROM audit_event WHERE actor = :a"), {"a": actor})


async def test_concurrent_requests_with_one_key_write_once_the_second_waits_and_replays(things, engine):
    app, headers, behaviour, actor = things
    behaviour["sleep"] = 0.5
    results = await _at_once(app, headers)
    (ran, ran_done), (replayed, replayed_done) = sorted(
        results, key=lambda result: "Idempotent-Replayed" in result[0].headers
    )
    assert ran.status_code == replayed.status_code == 201, (ran.text, replayed.text)
    assert "Idempotent-Replayed" not in ran.headers and replayed.headers["Idempotent-Replayed"] == "true"
    assert ran.json() == replayed.json()
    assert replayed_done >= ran_done  # it waited for the first to commit
    assert behaviour["calls"] == 1 and await _rows(engine, actor) == 1
    assert replayed.headers["Location"] == f"/test/things/{ran.json()['id']}"


async def test_when_the_first_of_two_concurrent_requests_fails_the_second_runs(things, engine):
    app, headers, behaviour, actor = things
    behaviour.update(sleep=0.3, fail_first=True)
    responses = sorted((response for response, _ in await _at_once(app, headers)), key=lambda r: r.status_code)
    succeeded, failed = responses
    assert (succeeded.status_code, failed.status_code) == (201, 422)
    assert "Idempotent-Replayed" not in succeeded.headers  # it ran: the failure left nothing to replay
    assert behaviour["calls"] == 2 and await _rows(engine, actor) == 1
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tierwise.test") as client:
        replay = await client.post("/test/things", json={"name": "one"}, headers={**headers, "Idempotency-Key": "same"})
    assert replay.json() == succeeded.json() and replay.headers["Idempotent-Replayed"] == "true"
