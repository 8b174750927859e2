"""`tierwise serve` as production runs it (uvicorn, production settings, JSON logs on stderr) on a scratch database
and a free port, with its log captured: for tests about the network and about what the logs hold."""

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from app.apikeys import service as apikeys_service
from app.core.db import create_sessionmaker
from app.core.migrations import upgrade_to_head
from bench.harness import free_port
from tests.factories import ENCRYPTION_KEY

ROOT = Path(__file__).resolve().parents[2]
PEPPER = "live-pepper-0123456789"
ROLES = ("app", "integration", "admin")


@dataclass
class LiveServer:
    base: str
    keys: dict[str, str]
    database_url: str
    log_file: Path
    process: subprocess.Popen

    def headers(self, role: str = "admin") -> dict[str, str]:
        return {"X-API-Key": self.keys[role]}

    def log(self) -> str:
        return self.log_file.read_text(errors="replace")


def plain_url(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def _make_keys(url: str) -> dict[str, str]:
    engine = create_async_engine(url)
    try:
        async with create_sessionmaker(engine)() as session:
            keys = {
                role: (await apikeys_service.create_api_key(session, f"live-{role}", role, PEPPER))[1] for role in ROLES
            }
            await session.commit()
            return keys
    finally:
        await engine.dispose()


@asynccontextmanager
async def live_server(
    database_url: str, log_dir: Path, serve_args: tuple[str, ...] = (), **env: str
) -> AsyncIterator[LiveServer]:
    """Migrate the (empty) database, make a key per role, serve (with `serve_args`: `tierwise serve` options);
    stop the server (SIGTERM) on the way out."""
    await asyncio.to_thread(upgrade_to_head, database_url)
    keys = await _make_keys(database_url)
    port = free_port()
    log_file = log_dir / f"tierwise-{port}.log"
    environment = {
        **os.environ,
        "TIERWISE_DATABASE_URL": plain_url(database_url),
        "TIERWISE_API_KEY_PEPPER": PEPPER,
        "TIERWISE_ENVIRONMENT": "production",
        "TIERWISE_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "TIERWISE_PORT": str(port),
        "TIERWISE_LOG_LEVEL": "DEBUG",
        **env,
    }
    with log_file.open("wb") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve", *serve_args],
            env=environment,
            cwd=ROOT,
            stdout=stderr,
            stderr=stderr,
        )
    server = LiveServer(f"http://127.0.0.1:{port}", keys, database_url, log_file, process)
    try:
        async with httpx.AsyncClient(base_url=server.base, timeout=5) as client:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline and process.poll() is None, server.log()
                await asyncio.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            await asyncio.to_thread(process.wait, 30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
