"""Liveness, readiness, metrics, request ids, the problem+json error format and the scheduled jobs."""

import asyncio
import logging

import pytest


async def test_healthz_is_ok_without_a_key(client):
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_reports_database_at_head(client):
    response = await client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "ready"


async def test_metrics_count_requests_by_route_template(client, as_role):
    await client.delete("/v1/api-keys/12345", headers=as_role("admin"))
    text = (await client.get("/metrics")).text
    assert "tierwise_http_requests_total" in text
    assert 'route="/v1/api-keys/{key_id}",status="404"' in text
    assert "tierwise_db_pool_checked_out" in text


async def test_request_id_is_echoed_or_generated(client):
    echoed = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert echoed.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz")
    assert len(generated.headers["x-request-id"]) == 32


async def test_unknown_route_is_problem_json(client):
    response = await client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 404 and body["title"] == "Not found" and body["type"].endswith("/not-found")


async def test_missing_key_is_401_and_wrong_scope_is_403(client, as_role):
    missing = await client.get("/v1/api-keys")
    assert missing.status_code == 401
    assert missing.headers["content-type"] == "application/problem+json"
    unknown = await client.get("/v1/api-keys", headers={"X-API-Key": "tw_000000000000_nope"})
    assert unknown.status_code == 401
    forbidden = await client.get("/v1/api-keys", headers=as_role("app"))
    assert forbidden.status_code == 403
    assert "admin" in forbidden.json()["detail"]


async def test_oversized_body_is_413_problem_json(client, as_role):
    big = b"{" + b" " * 2_000_000 + b"}"
    response = await client.post(
        "/v1/api-keys", content=big, headers={**as_role("admin"), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == "application/problem+json"


async def test_validation_error_points_at_each_bad_field(client, as_role):
    response = await client.post("/v1/api-keys", json={"name": "", "role": "superuser"}, headers=as_role("admin"))
    assert response.status_code == 422
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert pointers == {"/name", "/role"}


async def test_unexpected_error_is_500_without_internals(client, as_role, monkeypatch):
    from app.apikeys import service

    async def explode(*args, **kwargs):
        raise RuntimeError("password=hunter2 at db.internal:5432")

    monkeypatch.setattr(service, "list_api_keys", explode)
    response = await client.get("/v1/api-keys", headers=as_role("admin"))
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "hunter2" not in response.text and "RuntimeError" not in response.text


@pytest.mark.parametrize("path", ["hot", "routed"])
async def test_an_unexpected_error_is_answered_with_the_request_id_and_counted_as_a_500(
    client, routed, as_role, monkeypatch, path
):
    """The answer to an exception no handler took and the request's id, trace and metrics are one middleware
    (app.core.middleware.RequestContextMiddleware): the 500 is problem+json, carries the request's id and trace,
    and is counted under its route with status 500, on the hot path and through the router alike."""
    from app.core.middleware import REQUESTS
    from app.tiering.assignment import reads

    async def explode(*args, **kwargs):
        raise RuntimeError("password=hunter2")

    monkeypatch.setattr(reads, "customer_tiers_json", explode)
    counted = REQUESTS.labels("GET", "/v1/customers/{customer_id}/tiers", "500")
    before = counted._value.get()
    headers = {**as_role("app"), "X-Request-ID": "req-500-check"}
    response = await (client if path == "hot" else routed).get("/v1/customers/C1/tiers", headers=headers)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["status"] == 500 and "hunter2" not in response.text
    assert response.headers["x-request-id"] == "req-500-check" and response.headers["traceparent"]
    assert counted._value.get() == before + 1


async def test_readyz_is_503_when_migrations_are_not_at_head(scratch_database, test_settings):
    import httpx
    from sqlalchemy.ext.asyncio import create_async_engine

    from app.core.db import create_sessionmaker
    from app.main import create_app

    engine = create_async_engine(scratch_database())  # an empty database: no alembic_version at all
    app = create_app(test_settings, sessionmaker=create_sessionmaker(engine))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        response = await client.get("/readyz")
    await engine.dispose()
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]


async def test_a_scheduled_job_runs_again_after_a_failed_round(monkeypatch, caplog):
    from app.core import schedule

    rounds, sleeps = [], []

    async def job():
        rounds.append(len(rounds))
        if len(rounds) == 2:
            raise RuntimeError("the database is away")
        if len(rounds) == 4:
            raise asyncio.CancelledError  # as the lifespan cancels it at shutdown
        return {"stored": len(rounds)}

    async def sleep(seconds):
        sleeps.append(seconds)

    monkeypatch.setattr(schedule.asyncio, "sleep", sleep)
    with caplog.at_level(logging.INFO, logger="app.core.schedule"), pytest.raises(asyncio.CancelledError):
        await schedule.run_every(10, job, "offer states refreshed")
    assert rounds == [0, 1, 2, 3] and sleeps == [600] * 4  # the failed second round did not end the loop
    messages = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("ERROR", "offer states refreshed: failed") in messages and messages.count(
        ("INFO", "offer states refreshed")
    ) == 2
