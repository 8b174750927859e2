"""The service as production runs it: `tierwise serve` (uvicorn) in a process of its own on a database of the
throwaway cluster, reached over loopback HTTP; and the test's own line to that database, beside the service."""

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.ext.asyncio import create_async_engine

from app.apikeys import service as apikeys_service
from app.core.db import create_sessionmaker
from app.core.embedded import create_database, to_async_url
from app.core.migrations import upgrade_to_head
from app.tiering.policies import load_default_policies
from bench.harness import free_port
from tests.factories import ENCRYPTION_KEY, inserting_customers

ROOT = Path(__file__).resolve().parents[2]
PEPPER = "faults-pepper-0123456789"
# Short timeouts, so that a hung server shows its bound in seconds; the defaults are 5 s (connect), 30 s (a
# request's statement) and 5 s (a hot read's statement).
TIMEOUT_S = 1
SETTINGS = {
    "TIERWISE_DB_CONNECT_TIMEOUT_S": TIMEOUT_S,
    "TIERWISE_DB_COMMAND_TIMEOUT_S": TIMEOUT_S,
    "TIERWISE_READ_TIMEOUT_S": TIMEOUT_S,
    "TIERWISE_DB_POOL_TIMEOUT_S": TIMEOUT_S,
    "TIERWISE_DB_POOL_SIZE": 6,
    "TIERWISE_DB_MAX_OVERFLOW": 2,
    "TIERWISE_READ_POOL_SIZE": 3,
    "TIERWISE_TIER_RUN_WORKERS": 1,
    "TIERWISE_STATS_REFRESH_MINUTES": 0,
    "TIERWISE_OFFER_STATES_REFRESH_MINUTES": 0,
    "TIERWISE_LOG_LEVEL": "WARNING",
}
SPAN_LOCKS = 7311  # app.customers.service: a batch chunk takes its span's lock exclusively


async def prepare_database(server_url: str, customers: int = 30) -> tuple[str, str]:
    """A new database on the cluster, migrated, with the default tier policies active, `customers` customers
    (ids from 1: one span of the customer locks) and an admin key. Returns (plain DSN, key)."""
    url = await asyncio.to_thread(create_database, server_url, f"tierwise_faults_{uuid.uuid4().hex[:8]}")
    await asyncio.to_thread(upgrade_to_head, url)
    engine = create_async_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            await load_default_policies(session)
            _, key = await apikeys_service.create_api_key(session, "faults", "admin", PEPPER)
            await session.commit()
        async with engine.begin() as connection:
            await connection.exec_driver_sql(
                inserting_customers(
                    "INSERT INTO customer (external_id, segment, onboarded_at) SELECT 'P' || i, 'retail', "
                    f"now() - interval '400 days' FROM generate_series(1, {customers}) i"
                )
            )
    finally:
        await engine.dispose()
    return url.replace("postgresql+asyncpg://", "postgresql://"), key


class LiveServer:
    """`python -m app.cli serve` on a free loopback port, its log in a file."""

    def __init__(self, dsn: str, **settings) -> None:
        self.dsn, self.settings = dsn, settings
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(tempfile.mkstemp(prefix="tierwise-live-", suffix=".log")[1])
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30) -> "LiveServer":
        env = {
            **os.environ,
            "TIERWISE_DATABASE_URL": self.dsn,
            "TIERWISE_API_KEY_PEPPER": PEPPER,
            "TIERWISE_ENVIRONMENT": "production",
            "TIERWISE_ENCRYPTION_KEY": ENCRYPTION_KEY,
            "TIERWISE_PORT": str(self.port),
            **{name: str(value) for name, value in {**SETTINGS, **self.settings}.items()},
        }
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "app.cli", "serve"], env=env, cwd=ROOT, stdout=log, stderr=log
            )
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"the server did not start:\n{self.log()}")
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL, as the kernel's OOM killer or a crashed host ends it: no shutdown, no cleanup."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def errors(self) -> list[str]:
        """Log lines of unhandled errors (the 500s)."""
        return [line for line in self.log().splitlines() if '"unhandled error"' in line]


async def waiting_on_locks(dsn: str, at_least: int = 1, timeout: float = 15) -> None:
    """Until at least `at_least` of the service's backends wait on a lock (pg_stat_activity), on a line of its own."""
    connection = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while (
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tierwise' AND wait_event_type = 'Lock'"
            )
            < at_least
        ):
            assert time.monotonic() < deadline, f"fewer than {at_least} of the service's backends wait on a lock"
            await asyncio.sleep(0.05)
    finally:
        await connection.close()


async def hold_first_span(dsn: str) -> asyncpg.Connection:
    """A connection sharing the customer-lock span of ids 0..49,999: writers pass, a batch chunk of it waits."""
    connection = await asyncpg.connect(dsn)
    await connection.execute(f"SELECT pg_advisory_lock_shared({SPAN_LOCKS}, 0)")
    return connection


async def start_blocked_run(client: httpx.AsyncClient, headers: dict, dsn: str) -> int:
    """A tier run of every policy, started and waiting (its first chunk) for the span the test holds."""
    started = await client.post("/v1/tier-runs", json={"all": True}, headers=headers)
    assert started.status_code == 202, started.text
    await waiting_on_locks(dsn, 1)
    return started.json()["id"]


async def run_status(client: httpx.AsyncClient, headers: dict, run_id: int) -> dict:
    response = await client.get(f"/v1/tier-runs/{run_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def until_finished(client: httpx.AsyncClient, headers: dict, run_id: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while (run := await run_status(client, headers, run_id))["status"] == "running":
        assert time.monotonic() < deadline, f"run {run_id} never finished: {run}"
        await asyncio.sleep(0.1)
    return run


def to_async(dsn: str) -> str:
    return to_async_url(dsn)
