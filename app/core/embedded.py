"""The embedded Postgres (pgserver) used when no TIERWISE_DATABASE_URL is configured."""

import json
import logging
from pathlib import Path

from sqlalchemy.engine import make_url

from app.core.config import Settings

log = logging.getLogger(__name__)
_servers: dict[Path, object] = {}


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or join) an embedded Postgres whose data lives in data_dir; return a server URL. pgserver registers
    this process and stops the server when the last registered process exits (stop_embedded_postgres, or at exit)."""
    import pgserver  # imported lazily: only the embedded path needs it

    pgdata = data_dir.resolve() / "pgdata"
    pgdata.mkdir(parents=True, exist_ok=True)
    if pgdata not in _servers:
        with pgserver.postgres_server.PostgresServer._lock:
            _forget_exited_processes(pgdata)
        _servers[pgdata] = pgserver.get_server(pgdata, cleanup_mode="stop")
        log.info("embedded postgres started", extra={"pgdata": str(pgdata)})
    uri = _servers[pgdata].get_uri()  # postgresql://postgres:@/postgres?host=/socket/dir
    url = make_url(uri)
    return url.set(database="tierwise").render_as_string(hide_password=False)


def _forget_exited_processes(pgdata: Path) -> None:
    """Drop pgserver's registrations of processes that no longer run. A process killed before its exit handlers
    ran (SIGKILL; SIGTERM before `tierwise` turned it into a normal exit) stays registered, and the server would
    then never be stopped by anyone."""
    handles = pgdata / ".handle_pids.json"
    if handles.exists():
        registered = json.loads(handles.read_text() or "[]")
        running = [pid for pid in registered if _runs(pid)]
        if running != registered:
            handles.write_text(json.dumps(running))


def _runs(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def stop_embedded_postgres() -> None:
    """Release this process's hold on the embedded servers it started; the last process to let go stops one (the
    registrations of exited processes, such as serving workers ended by a signal, do not count)."""
    import pgserver

    while _servers:
        pgdata, server = _servers.popitem()
        with pgserver.postgres_server.PostgresServer._lock:
            _forget_exited_processes(pgdata)
        server.cleanup()
        log.info("embedded postgres released", extra={"pgdata": str(pgdata)})


def has_embedded_postgres(data_dir: Path) -> bool:
    """Whether data_dir holds an embedded Postgres cluster already (without starting or creating one)."""
    return (data_dir.resolve() / "pgdata" / "PG_VERSION").exists()


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


def database_exists(url: str) -> bool:
    return bool(_admin(url, "SELECT 1 FROM pg_database WHERE datname = $1", make_url(url).database))


def ensure_database_exists(url: str) -> None:
    """Create the database named in url on its server if it does not exist yet."""
    if not database_exists(url):
        _admin(url, f'CREATE DATABASE "{make_url(url).database}"')


def create_database(server_url: str, name: str) -> str:
    """Create a new database on the server of server_url; returns its asyncpg URL."""
    _admin(server_url, f'CREATE DATABASE "{name}"')
    return to_async_url(make_url(server_url).set(database=name).render_as_string(hide_password=False))


def drop_database(url: str) -> None:
    _admin(url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
