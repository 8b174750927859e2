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


def ensure_database_exists(url: str) -> None:
    """Create the database named in url on its server if it does not exist yet."""
    import asyncio

    import asyncpg

    parsed = make_url(url)
    name = parsed.database

    async def create() -> None:
        admin = parsed.set(drivername="postgresql", database="postgres")
        conn = await asyncpg.connect(_asyncpg_dsn(admin))
        try:
            exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
            if not exists:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(create())
        return
    # Called from inside a running loop (tests, lifespan): run in a helper thread with its own loop.
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, create()).result()


def _asyncpg_dsn(url) -> str:
    """A DSN asyncpg accepts, keeping a unix-socket host given as a query parameter."""
    return url.set(drivername="postgresql").render_as_string(hide_password=False)
