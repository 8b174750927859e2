"""A tier run whose process is killed (SIGKILL: no cleanup, no goodbye) mid-run, whether `tierwise tier-run` from
cron or the server that ran it in the background: Postgres ends the process's sessions, the run's lock goes with
them, and a new run starts at once (never a 409), the killed one failed."""

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from app.tiering.runs import ABANDONED
from tests.faults.live import (
    PEPPER,
    ROOT,
    LiveServer,
    hold_first_span,
    prepare_database,
    run_status,
    start_blocked_run,
    until_finished,
    waiting_on_locks,
)

TIERWISE = Path(sys.executable).parent / "tierwise"  # the installed entry point


@pytest.fixture(scope="module")
async def database(cluster):
    return await prepare_database(cluster.url())


async def _replaced(client, headers, killed_run: int, span: asyncpg.Connection, after: str) -> None:
    """A new run is accepted at once; the killed one reads failed; the new one finishes once the span is free."""
    fresh, waited = await _accepted_at_once(client, headers)
    print(f"\na new tier run accepted {waited:.2f} s after {after}")
    old = await run_status(client, headers, killed_run)
    assert (old["status"], old["error"]) == ("failed", ABANDONED)
    await span.execute("SELECT pg_advisory_unlock_all()")
    assert (await until_finished(client, headers, fresh))["status"] == "succeeded"


async def _accepted_at_once(client, headers) -> tuple[int, float]:
    """POST a run; returns its id and how long it took to be accepted. A 409 is allowed only while Postgres is
    still ending the killed process's sessions (it learns of the death from the closed socket)."""
    started = time.monotonic()
    while True:
        response = await client.post("/v1/tier-runs", json={"all": True}, headers=headers)
        if response.status_code == 202:
            return response.json()["id"], time.monotonic() - started
        assert response.status_code == 409 and time.monotonic() - started < 1, response.text
        await asyncio.sleep(0.02)


async def test_a_killed_tier_run_command_leaves_no_running_run_behind(database):
    dsn, key = database
    headers = {"X-API-Key": key}
    server = LiveServer(dsn).start()
    span = await hold_first_span(dsn)
    try:
        env = {**os.environ, "TIERWISE_DATABASE_URL": dsn, "TIERWISE_API_KEY_PEPPER": PEPPER}
        command = subprocess.Popen(
            [str(TIERWISE), "tier-run", "--all"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        await waiting_on_locks(dsn, 1)  # its first chunk waits for the span the test shares
        killed_run = await span.fetchval("SELECT id FROM tier_run WHERE status = 'running'")
        command.send_signal(signal.SIGKILL)
        command.wait(10)
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            await _replaced(client, headers, killed_run, span, "`tierwise tier-run` was killed")
    finally:
        await span.close()
        server.stop()
    assert server.errors() == []


async def test_a_server_killed_mid_run_is_replaced_by_one_that_starts_a_new_run_at_once(database):
    dsn, key = database
    headers = {"X-API-Key": key}
    server = LiveServer(dsn).start()
    span = await hold_first_span(dsn)
    replacement = None
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            killed_run = await start_blocked_run(client, headers, dsn)
        server.kill()
        replacement = LiveServer(dsn).start()
        async with httpx.AsyncClient(base_url=replacement.url, timeout=30) as client:
            await _replaced(client, headers, killed_run, span, "the replacement server was ready")
    finally:
        await span.close()
        server.stop()
        if replacement is not None:
            replacement.stop()
    assert replacement.errors() == []
    leftovers = await asyncpg.connect(dsn)
    try:
        assert await leftovers.fetchval("SELECT count(*) FROM tier_run WHERE status = 'running'") == 0
    finally:
        await leftovers.close()
