"""Reads from a real streaming replica (pg_basebackup -R of the fault tests' cluster, a hot standby on a loopback
port of its own) under a live server: reads are served by the replica (a paused replica answers what the primary
no longer does), a write's consistency token reads the write (from the primary while the replica lags, from the
replica once it has replayed it), a replica stopped under load leaves every read to the primary without an
error, and a replica lagging past the bound is taken out of rotation; /metrics and /readyz say so."""

import asyncio
import time
from types import SimpleNamespace

import asyncpg
import httpx
import pytest
from sqlalchemy.engine import make_url

from app.core.replicas import CONSISTENCY_HEADER, parse_lsn
from tests.factories import customer_body
from tests.faults.cluster import StandbyCluster
from tests.faults.live import LiveServer, prepare_database

# Checked five times a second, each check given half a second: the tests see rotation change within a second.
REPLICA_SETTINGS = {"TIERWISE_READ_HEALTH_INTERVAL_S": 0.2, "TIERWISE_READ_HEALTH_TIMEOUT_S": 0.5}
LAG_BOUND_BYTES = 1_048_576
HOT, ROUTED = "/v1/customers/{}/tiers", "/v1/customers?limit=200"


@pytest.fixture(scope="module")
async def replicated(cluster):
    dsn, key = await prepare_database(cluster.url())
    standby = await asyncio.to_thread(lambda: StandbyCluster(cluster).init())
    replica_dsn = make_url(dsn).set(port=standby.port).render_as_string(hide_password=False)
    # Bounds: a replica paused for a few seconds stays in rotation (the lag in seconds counts from its last
    # replayed commit), until a megabyte of WAL waits for it (the lag test writes that much).
    server = LiveServer(
        dsn,
        TIERWISE_READ_DATABASE_URL=replica_dsn,
        TIERWISE_READ_MAX_LAG_SECONDS=60,
        TIERWISE_READ_MAX_LAG_BYTES=LAG_BOUND_BYTES,
        TIERWISE_RATE_LIMIT_ADMIN_PER_S=0,  # the load below is ten loops of one admin key: no rate limit here
        **REPLICA_SETTINGS,
    ).start()
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        yield SimpleNamespace(
            dsn=dsn, replica_dsn=replica_dsn, standby=standby, server=server, client=client, headers={"X-API-Key": key}
        )
    server.stop()
    await asyncio.to_thread(standby.destroy)
    assert server.errors() == [], server.log()  # no 500


async def _on_replica(replicated, statement: str):
    connection = await asyncpg.connect(replicated.replica_dsn)
    try:
        return await connection.fetchval(statement)
    finally:
        await connection.close()


async def _metric(client: httpx.AsyncClient, name: str, **labels) -> float:
    text = (await client.get("/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith((name + "{", name + " ")) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def _replica_state(client: httpx.AsyncClient) -> dict:
    ready = await client.get("/readyz")
    assert ready.status_code == 200, ready.text
    (replica,) = ready.json()["replicas"]
    return replica


async def _until(predicate, what: str, timeout: float = 10):
    deadline = time.monotonic() + timeout
    while not (value := await predicate()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)
    return value


async def _replayed(client: httpx.AsyncClient, token: str) -> None:
    async def done():
        replica = await _replica_state(client)
        return replica["in_rotation"] and parse_lsn(replica["replay_lsn"]) >= parse_lsn(token)

    await _until(done, f"the replica to replay {token}")


async def _listed(client, headers) -> set[str]:
    response = await client.get(ROUTED, headers=headers)
    assert response.status_code == 200, response.text
    return {item["customer_id"] for item in response.json()["items"]}


async def test_reads_go_to_the_replica_and_a_token_reads_the_write(replicated):
    client, headers = replicated.client, replicated.headers
    first = await client.put("/v1/customers/R1", json=customer_body(), headers=headers)
    assert first.status_code == 201, first.text
    token = first.headers[CONSISTENCY_HEADER]
    assert parse_lsn(token) is not None
    await _replayed(client, token)

    assert await _on_replica(replicated, "SELECT pg_is_in_recovery()") is True
    await _on_replica(replicated, "SELECT pg_wal_replay_pause()")
    try:
        second = await client.put("/v1/customers/R2", json=customer_body(), headers=headers)
        assert second.status_code == 201, second.text
        written = second.headers[CONSISTENCY_HEADER]
        assert parse_lsn(written) > parse_lsn(token)
        behind = await _metric(client, "tierwise_read_fallbacks_total", reason="behind_token")

        # Without a token: the paused replica answers, which has R1 and not yet R2 (the primary has both).
        assert (await client.get(HOT.format("R1"), headers=headers)).status_code == 200
        assert (await client.get(HOT.format("R2"), headers=headers)).status_code == 404
        assert {"R1"} <= await _listed(client, headers) and "R2" not in await _listed(client, headers)
        # Recommendations stay on the primary (they write the served list; the offer state is UNLOGGED: not on a
        # replica): R2's are there.
        assert (await client.get("/v1/customers/R2/recommendations", headers=headers)).status_code == 200

        # With the write's token: the replica has not replayed it, so the primary serves both kinds of read.
        with_token = {**headers, CONSISTENCY_HEADER: written}
        tiers = await client.get(HOT.format("R2"), headers=with_token)
        assert tiers.status_code == 200 and tiers.json()["customer_id"] == "R2", tiers.text
        assert "R2" in await _listed(client, with_token)
        assert await _metric(client, "tierwise_read_fallbacks_total", reason="behind_token") == behind + 2
        # A token that is not one also goes to the primary (never a 4xx or 5xx).
        garbled = await client.get(HOT.format("R2"), headers={**headers, CONSISTENCY_HEADER: "not-an-lsn"})
        assert garbled.status_code == 200
    finally:
        await _on_replica(replicated, "SELECT pg_wal_replay_resume()")

    # Once replayed, the token's read is the replica's again: no fallback, one more read on the replica.
    await _replayed(client, written)
    behind = await _metric(client, "tierwise_read_fallbacks_total", reason="behind_token")
    on_replica = await _metric(client, "tierwise_read_replica_reads_total")
    assert "R2" in await _listed(client, with_token)
    assert (await client.get(HOT.format("R2"), headers=with_token)).status_code == 200
    assert await _metric(client, "tierwise_read_fallbacks_total", reason="behind_token") == behind
    assert await _metric(client, "tierwise_read_replica_reads_total") == on_replica + 2
    assert await _metric(client, "tierwise_read_replica_in_rotation") == 1


async def test_a_replica_stopped_under_load_leaves_the_reads_to_the_primary(replicated):
    client, headers, standby = replicated.client, replicated.headers, replicated.standby
    written = await client.put("/v1/customers/R5", json=customer_body(), headers=headers)
    assert written.status_code in (200, 201), written.text
    await _replayed(client, written.headers[CONSISTENCY_HEADER])
    paths = [
        HOT.format("R5"),
        "/v1/customers/R5/benefits",
        "/v1/customers/R5/recommendations",
        ROUTED,
        "/v1/reports/tier-distribution?policy=wealth",
    ]
    answered: list[tuple[float, str, int]] = []
    stop = asyncio.Event()

    async def load(path: str) -> None:
        while not stop.is_set():
            response = await client.get(path, headers=headers)
            answered.append((time.monotonic(), path, response.status_code))

    failed_before = await _metric(client, "tierwise_read_fallbacks_total", reason="replica_failed")
    none_before = await _metric(client, "tierwise_read_fallbacks_total", reason="none_in_rotation")
    tasks = [asyncio.create_task(load(path)) for path in paths for _ in range(2)]
    try:
        await asyncio.sleep(1.0)
        stopped_at = time.monotonic()
        await asyncio.to_thread(standby.stop, "fast")  # its sessions are terminated, new ones refused
        await asyncio.sleep(2.0)

        async def every_kind_answered_since() -> bool:  # waited for: a loaded machine answers some later
            return {path for at, path, _ in answered if at > stopped_at + 0.5} == set(paths)

        await _until(every_kind_answered_since, "every kind of read answered after the replica stopped", 30)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
    try:
        assert [a for a in answered if a[2] != 200] == []
        after = {path for at, path, _ in answered if at > stopped_at + 0.5}
        assert after == set(paths)  # every kind of read went on being answered without the replica
        replica = await _replica_state(client)
        assert replica["in_rotation"] is False and replica["error"]
        assert await _metric(client, "tierwise_read_replica_in_rotation") == 0
        assert (
            await _metric(client, "tierwise_read_fallbacks_total", reason="replica_failed") > failed_before
            or await _metric(client, "tierwise_read_fallbacks_total", reason="none_in_rotation") > none_before
        )
    finally:
        await asyncio.to_thread(standby.start)
    await _until(lambda: _rotation(client, True), "the restarted replica back in rotation")


async def _rotation(client, expected: bool) -> bool:
    return (await _replica_state(client))["in_rotation"] is expected


async def test_a_lagging_replica_is_taken_out_of_rotation(replicated):
    """Replay paused and more WAL than the bound written on the primary: the replica is out within a check, its
    reads are the primary's (fresh, without a token) until it has caught up and is back."""
    client, headers = replicated.client, replicated.headers
    await _until(lambda: _rotation(client, True), "the replica in rotation")
    await _on_replica(replicated, "SELECT pg_wal_replay_pause()")
    try:
        primary = await asyncpg.connect(replicated.dsn)
        try:  # WAL and nothing else: a message no table keeps
            ballast = "SELECT pg_logical_emit_message(false, 'ballast', repeat('x', $1))"
            await primary.execute(ballast, 2 * LAG_BOUND_BYTES)
        finally:
            await primary.close()
        written = await client.put("/v1/customers/R3", json=customer_body(), headers=headers)
        assert written.status_code == 201, written.text
        await _until(lambda: _rotation(client, False), "the lagging replica out of rotation", timeout=5)
        replica = await _replica_state(client)
        assert replica["lag_bytes"] > LAG_BOUND_BYTES and "bytes" in replica["error"]
        assert await _metric(client, "tierwise_read_replica_in_rotation") == 0
        assert await _metric(client, "tierwise_read_replica_lag_bytes") > LAG_BOUND_BYTES
        none_before = await _metric(client, "tierwise_read_fallbacks_total", reason="none_in_rotation")
        # No token, yet the write is seen: the primary serves while the replica is out.
        assert (await client.get(HOT.format("R3"), headers=headers)).status_code == 200
        assert "R3" in await _listed(client, headers)
        assert await _metric(client, "tierwise_read_fallbacks_total", reason="none_in_rotation") == none_before + 2
    finally:
        await _on_replica(replicated, "SELECT pg_wal_replay_resume()")
    await _until(lambda: _rotation(client, True), "the caught-up replica back in rotation")
    assert await _metric(client, "tierwise_read_replica_lag_bytes") < LAG_BOUND_BYTES
