"""Benchmark plumbing: a scratch database migrated to head, and the API served by uvicorn on loopback."""

import contextlib
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.core.embedded import create_database, drop_database, start_embedded_postgres, to_async_url
from app.core.migrations import upgrade_to_head

ROOT = Path(__file__).resolve().parents[1]
PEPPER = "bench-pepper-0123456789"
ENCRYPTION_KEY = "YmVuY2gtb25seS1lbmNyeXB0aW9uLWtleS0wMTIzNDU"  # base64url of 32 bytes, for scratch databases only


def server_url() -> str:
    return os.environ.get("TIERWISE_DATABASE_URL") or start_embedded_postgres(ROOT / ".tierwise" / "bench")


def plain_dsn(url: str, database: str | None = None) -> str:
    parsed = make_url(url).set(drivername="postgresql")
    if database:
        parsed = parsed.set(database=database)
    return parsed.render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database():
    """A new database on the benchmark server, migrated to head; dropped afterwards. Yields its plain DSN."""
    prefix = os.environ.get("TIERWISE_BENCH_DB_PREFIX", "tierwise_bench")  # a helper's own scratch names
    url = create_database(server_url(), f"{prefix}_{uuid.uuid4().hex[:8]}")
    try:
        upgrade_to_head(url)
        yield plain_dsn(url)
    finally:
        drop_database(url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(
    dsn: str,
    workers: int = 1,
    app: str = "app.main:create_production_app",
    root: Path = ROOT,
    env: dict[str, str] | None = None,
):
    """uvicorn serving the app (of the checkout at `root`) on a free loopback port; yields the base URL. `env`
    adds or overrides settings."""
    port = free_port()
    extra = env or {}
    env = {
        **os.environ,
        "TIERWISE_DATABASE_URL": dsn,
        "TIERWISE_API_KEY_PEPPER": PEPPER,
        "TIERWISE_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "TIERWISE_LOG_LEVEL": "WARNING",
        "TIERWISE_ENVIRONMENT": "production",
        # throughput is the point here: no per-key rate limit, no scheduled refresh mid-run
        "TIERWISE_RATE_LIMIT_APP_PER_S": "0",
        "TIERWISE_RATE_LIMIT_INTEGRATION_PER_S": "0",
        "TIERWISE_RATE_LIMIT_ADMIN_PER_S": "0",
        "TIERWISE_STATS_REFRESH_MINUTES": "0",
        "TIERWISE_OFFER_STATES_REFRESH_MINUTES": "0",
        **extra,
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            app,
            "--factory",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--no-access-log",
            "--log-level",
            "warning",
            "--loop",
            "uvloop",
        ],
        env={**env, "PYTHONPATH": str(root)},
        cwd=root,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the server did not start")
        yield base
    finally:
        process.terminate()
        process.wait(timeout=30)


async def execute(dsn: str, statement: str, *args) -> None:
    """One statement on a connection of its own (set-up and clean-up between timed phases)."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement, *args)
    finally:
        await conn.close()


async def create_key(dsn: str, role: str = "admin") -> str:
    from app.apikeys import service
    from app.core.db import create_engine, create_sessionmaker

    engine = create_engine(to_async_url(dsn), Settings(database_url=dsn))
    try:
        async with create_sessionmaker(engine)() as session:
            _, key = await service.create_api_key(session, f"bench-{role}", role, PEPPER)
            await session.commit()
            return key
    finally:
        await engine.dispose()
