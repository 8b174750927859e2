"""The database stopped, its backends terminated, or hung, under a live server (`tierwise serve` on a Postgres the
tests own), with a tier run and a write in flight: every request gets 503 problem+json within the timeouts,
nothing is half written, the hot reads (on the production read pool) and the rest recover by themselves, and a
new tier run starts as soon as the database answers (the interrupted one is failed, never a 409)."""

import asyncio
import contextlib
import time
from types import SimpleNamespace

import httpx
import pytest

from tests.factories import customer_body
from tests.faults.live import (
    TIMEOUT_S,
    LiveServer,
    hold_first_span,
    prepare_database,
    run_status,
    start_blocked_run,
    until_finished,
    waiting_on_locks,
)

READS = ("/v1/customers/F1", "/v1/customers/F1/tiers", "/v1/customers/F1/recommendations")  # routed, hot, hot
FIGURES: dict[str, float] = {}  # measured here, printed at the end of the module (pytest -s shows them)


@pytest.fixture(scope="module")
async def served(cluster):
    dsn, key = await prepare_database(cluster.url())
    server = LiveServer(dsn).start()
    headers = {"X-API-Key": key}
    # A connection per request: what one error response does to a keep-alive connection is another test's matter.
    async with httpx.AsyncClient(
        base_url=server.url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)
    ) as client:
        assert (await client.put("/v1/customers/F1", json=customer_body(), headers=headers)).status_code == 201
        yield SimpleNamespace(dsn=dsn, server=server, client=client, headers=headers)
    server.stop()
    print("\nfault figures (s):", {name: round(value, 2) for name, value in FIGURES.items()})
    assert server.errors() == [], server.log()  # no 500


def _unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert int(response.headers["retry-after"]) >= 1


async def _timed(request) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await request
    return response, time.monotonic() - started


async def _all_served(client, headers) -> None:
    for path in READS:
        response = await client.get(path, headers=headers)
        assert response.status_code == 200, (path, response.text)


async def _start_run_once_back(client, headers, since: float, timeout: float = 20) -> int:
    """POST a tier run until it is accepted (503 while the service reconnects; never 409); returns its id."""
    while True:
        response = await client.post("/v1/tier-runs", json={"all": True}, headers=headers)
        if response.status_code == 202:
            return response.json()["id"]
        assert response.status_code == 503, response.text
        assert time.monotonic() - since < timeout, "no new run was accepted"
        await asyncio.sleep(0.1)


async def test_a_stopped_database_gives_503_at_once_leaves_nothing_half_written_and_a_new_run_starts_when_back(
    served, fault
):
    client, headers = served.client, served.headers
    await _all_served(client, headers)
    span = await hold_first_span(served.dsn)
    try:
        interrupted = await start_blocked_run(client, headers, served.dsn)
        write = asyncio.create_task(client.put("/v1/customers/HALF", json=customer_body(), headers=headers))
        await waiting_on_locks(served.dsn, 2)  # the write, inside its transaction, waits behind the chunk

        fault.stop("fast")
        _unavailable(await write)
        for path in READS:
            response, FIGURES[f"stopped: 503 for GET {path}"] = await _timed(client.get(path, headers=headers))
            _unavailable(response)
        response, FIGURES["stopped: 503 for a write"] = await _timed(
            client.put("/v1/customers/F2", json=customer_body(), headers=headers)
        )
        _unavailable(response)
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and ready.headers["content-type"] == "application/problem+json"
        _unavailable(await client.post("/v1/tier-runs", json={"all": True}, headers=headers))
        assert max(value for name, value in FIGURES.items() if name.startswith("stopped")) < 1  # refused: at once
    finally:
        with contextlib.suppress(Exception):
            await span.close()

    fault.start()
    back = time.monotonic()
    fresh = await _start_run_once_back(client, headers, back)
    FIGURES["stopped: a new tier run accepted after the restart"] = time.monotonic() - back
    failed = await run_status(client, headers, interrupted)
    assert failed["status"] == "failed" and failed["finished_at"] is not None
    done = await until_finished(client, headers, fresh)
    assert done["status"] == "succeeded" and done["processed"] == done["total"] > 0
    await _all_served(client, headers)
    assert (await client.get("/v1/customers/HALF", headers=headers)).status_code == 404
    assert (await client.get("/v1/customers/F2", headers=headers)).status_code == 404
    assert (await client.put("/v1/customers/HALF", json=customer_body(), headers=headers)).status_code == 201


async def test_terminated_backends_fail_the_run_they_carried_and_every_request_recovers(served):
    client, headers = served.client, served.headers
    await _all_served(client, headers)
    span = await hold_first_span(served.dsn)
    try:
        carried = await start_blocked_run(client, headers, served.dsn)
        terminated = await span.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'tierwise'"
        )
        assert terminated >= 3  # the run's lock holder and chunk, the pools' connections
        killed = time.monotonic()
        fresh = await _start_run_once_back(client, headers, killed)
        FIGURES["terminated: a new tier run accepted"] = time.monotonic() - killed
        assert (await run_status(client, headers, carried))["status"] == "failed"
        statuses = [(await client.get(path, headers=headers)).status_code for _ in range(3) for path in READS]
        assert set(statuses) <= {200, 503} and statuses[-len(READS) :] == [200] * len(READS), statuses
        FIGURES["terminated: 503s among the next 9 reads"] = statuses.count(503)
    finally:
        await span.close()
    assert (await until_finished(client, headers, fresh))["status"] == "succeeded"


async def test_a_hung_database_gives_503_within_the_timeouts_and_the_service_resumes_when_it_answers(served, fault):
    client, headers = served.client, served.headers
    await _all_served(client, headers)
    fault.freeze()
    try:
        for path in READS:
            response, FIGURES[f"hung: 503 for GET {path}"] = await _timed(client.get(path, headers=headers))
            _unavailable(response)
        response, FIGURES["hung: 503 for a write"] = await _timed(
            client.put("/v1/customers/F3", json=customer_body(), headers=headers)
        )
        _unavailable(response)
        ready, FIGURES["hung: 503 from /readyz"] = await _timed(client.get("/readyz"))
        assert ready.status_code == 503
        # Each statement gives up after TIMEOUT_S (the command and read timeouts), each new connection too; a
        # pooled connection made stale by the first timeout is closed on its next checkout, which SQLAlchemy gives
        # 2 s to close politely.
        assert max(value for name, value in FIGURES.items() if name.startswith("hung")) < TIMEOUT_S + 2 + 1
        burst, FIGURES["hung: 12 concurrent requests all answered 503"] = await _timed(
            asyncio.gather(*(client.get(READS[i % 3], headers=headers) for i in range(12)))
        )
        for response in burst:
            _unavailable(response)
        # at most: waiting for a pooled connection, then as above
        assert FIGURES["hung: 12 concurrent requests all answered 503"] < 2 * TIMEOUT_S + 2 + 1
    finally:
        fault.thaw()
    thawed = time.monotonic()
    while True:
        statuses = [(await client.get(path, headers=headers)).status_code for path in READS]
        if statuses == [200] * len(READS):
            break
        assert set(statuses) <= {200, 503} and time.monotonic() - thawed < 10, statuses
    FIGURES["hung: every read served again after the server answers"] = time.monotonic() - thawed


async def test_guessed_keys_from_one_address_get_429_whatever_x_forwarded_for_says(served):
    statuses = []
    for i in range(25):
        response = await served.client.get(
            "/v1/products", headers={"X-API-Key": f"tw_{i:012x}_{'x' * 43}", "X-Forwarded-For": f"198.51.100.{i}"}
        )
        statuses.append(response.status_code)
    assert statuses[:20] == [401] * 20 and statuses[20:] == [429] * 5
    assert (await served.client.get("/v1/products", headers=served.headers)).status_code == 200
