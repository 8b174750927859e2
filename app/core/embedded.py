"""The embedded Postgres (pgserver) used when no TIERWISE_DATABASE_URL is configured."""

import logging
from pathlib import Path

from sqlalchemy.engine import make_url

from app.core.config import Settings

log = logging.getLogger(__name__)
_servers: dict[Path, object] = {}


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) an embedded Postgres whose data lives in data_dir; return a server URL."""
    import pgserver  # imported lazily: only the embedded path needs it

    pgdata = data_dir.resolve() / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    if pgdata not in _servers:
        _servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode="stop")
        log.info("embedded postgres started", extra={"pgdata": str(pgdata)})
    uri = _servers[pgdata].get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
    url = make_url(uri)
    return url.set(database="tierwise").render_as_string(hide_password=False)


def to_async_url(url: str) -> str:
    """The SQLAlchemy asyncpg form of a Postgres URL."""
    parsed = make_url(url)
    return parsed.set(drivername="postgresql+asyncpg").render_as_string(hide_password=False)


def resolve_database_url(settings: Settings) -> str:
    """The asyncpg URL of the service database; starts the embedded server when none is configured."""
    if settings.database_url:
        return to_async_url(settings.database_url)
    url = start_embedded_postgres(settings.data_dir)
    ensure_database_exists(url)
    return to_async_url(url)


def run_blocking(coroutine_factory) -> object:
    """Run a coroutine to completion from synchronous code, also when an event loop is already running here."""
    import asyncio
    import concurrent.futures

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine_factory())
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(lambda: asyncio.run(coroutine_factory())).result()


def _admin(url: str, sql: str, *args) -> object:
    """Run one statement on the server's `postgres` database (CREATE/DROP DATABASE cannot run in a transaction)."""
    import asyncpg

    admin = make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)

    async def run():
        conn = await asyncpg.connect(admin)
        try:
            return await conn.fetchval(sql, *args) if args else await conn.execute(sql)
        finally:
            await conn.close()

    return run_blocking(run)


def ensure_database_exists(url: str) -> None:
    """Create the database named in url on its server if it does not exist yet."""
    name = make_url(url).database
    if not _admin(url, "SELECT 1 FROM pg_database WHERE datname = $1", name):
        _admin(url, f'CREATE DATABASE "{name}"')


def create_database(server_url: str, name: str) -> str:
    """Create a new database on the server of server_url; returns its asyncpg URL."""
    _admin(server_url, f'CREATE DATABASE "{name}"')
    return to_async_url(make_url(server_url).set(database=name).render_as_string(hide_password=False))


def drop_database(url: str) -> None:
    _admin(url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
