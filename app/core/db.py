"""The database: declarative base, the one async engine, and the one session dependency."""

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import MetaData, event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from app.core.config import Settings
from app.core.errors import ServiceUnavailable
from app.core.metrics import (
    POOL_CHECKED_OUT,
    POOL_SIZE,
    POOL_TIMEOUTS,
    POOL_WAIT,
    MeasuredQueuePool,
    watch_engine_pool,
)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_engine(url: str, settings: Settings, *, batch: bool = False) -> AsyncEngine:
    """The service's engine. `batch` (the CLI's bulk commands): statements may take as long as they need;
    otherwise each gives up after settings.db_command_timeout_s, so that a hung server costs a request a 503."""
    engine = create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        # No ping per checkout (a round trip per request): a lost connection is detected on use, SQLAlchemy then
        # invalidates the pool, the request gets a 503 and the next ones connect afresh.
        pool_pre_ping=False,
        connect_args={
            "server_settings": server_settings(settings),
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": None if batch else settings.db_command_timeout_s,
        },
        hide_parameters=True,  # an error's text never quotes a statement's values (they are personal data)
        poolclass=MeasuredQueuePool,  # times checkouts and counts pool timeouts (app/core/metrics.py)
    )
    event.listen(engine.sync_engine, "handle_error", _drop_connection_on_timeout)
    watch_engine_pool(engine)
    return engine


def _drop_connection_on_timeout(context) -> None:
    """A statement that timed out leaves its connection waiting on a server that may never answer: drop it (and
    the pool's other connections, as for any lost connection) instead of sending it a ROLLBACK that would wait
    as long again."""
    if isinstance(context.original_exception, TimeoutError):
        context.is_disconnect = True
        if context.connection is not None and not context.connection.invalidated:
            context.connection.connection.driver_connection.terminate()  # at once, without a polite goodbye


def server_settings(settings: Settings) -> dict[str, str]:
    """Per-connection Postgres settings; the features view reads tierwise.risk_valid_days."""
    return {"application_name": "tierwise", "tierwise.risk_valid_days": str(settings.risk_assessment_valid_days)}


def create_sessionmaker(bind) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind, expire_on_commit=False, autoflush=False)


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session and one transaction per request: committed before the response is sent."""
    async with request.app.state.sessionmaker() as session:
        try:
            yield session
        except BaseException as exc:
            if connection_lost(exc):  # met on the driver connection (driver_connection), past SQLAlchemy
                await session.invalidate()
                raise database_unavailable() from exc
            await session.rollback()
            raise
        else:
            await session.commit()


def connection_lost(exc: BaseException) -> bool:
    """Whether asyncpg, used directly, says the connection is gone (closed, terminated by the server, a server
    shutting down or not answering). SQLAlchemy recognises these for its own statements; statements sent on the
    driver connection (driver_connection, the hot reads' pool) meet them raw."""
    if isinstance(exc, (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError, OSError)):
        return True
    return isinstance(exc, asyncpg.InterfaceError) and "closed" in str(exc)


def database_unavailable() -> ServiceUnavailable:
    return ServiceUnavailable("The database is unavailable; retry shortly.", headers={"Retry-After": "2"})


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]

UNIQUE_VIOLATION = "23505"


@asynccontextmanager
async def unique_or_raise(session: AsyncSession, conflict: Exception) -> AsyncIterator[None]:
    """A savepoint around a write that can lose a race on a unique key: losing it rolls back only what the block
    wrote, not the request's transaction, and raises `conflict` (the domain's 409) in its place."""
    try:
        async with session.begin_nested():
            yield
    except IntegrityError as exc:
        if getattr(exc.orig, "sqlstate", None) == UNIQUE_VIOLATION:
            raise conflict from None
        raise


async def driver_connection(session: AsyncSession):
    """The asyncpg connection under a session, inside the same transaction (if one has begun), for the few
    hottest reads where a benchmark shows SQLAlchemy's per-statement overhead matters. Statements are prepared
    and cached by asyncpg per connection."""
    connection = await session.connection()
    return (await connection.get_raw_connection()).driver_connection


def driver_statement(statement, dialect) -> tuple[str, list[Any], list[str]]:
    """A SQLAlchemy statement as asyncpg text with $n placeholders, its bound values in order (converted as
    SQLAlchemy would before sending them) and their names. The values stay parameters: asyncpg prepares the
    statement once per connection and reuses it."""
    compiled = statement.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    names = list(compiled.positiontup)
    values = []
    for name in names:
        value = compiled.params[name]
        process = compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
        values.append(process(value) if process is not None and value is not None else value)
    return str(compiled), values, names


HOT_PLANNER_SETTINGS = {"enable_hashjoin": "off", "enable_mergejoin": "off"}
"""The hot-read pool's planner settings (create_read_pool)."""


async def create_read_pool(engine: AsyncEngine, settings: Settings) -> asyncpg.Pool:
    """The hot reads' own small asyncpg pool (app/core/hotpath.py), on the engine's server and with its
    per-connection settings. A checkout through SQLAlchemy's AsyncConnection is a measurable share of such a read
    (bench/HISTORY.md); these reads use no ORM and begin no transaction, so each statement reads committed data.

    Its sessions plan without hash and merge joins (HOT_PLANNER_SETTINGS): every statement on it reads one
    customer's rows (or writes a few served lists), where a nested loop over index scans is the best plan, but
    the planner, estimating rows for an average customer, built a hash table of the product catalog on every
    recommendation (bench/HISTORY.md)."""
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    POOL_SIZE.labels("read").set(settings.read_pool_size)
    return await asyncpg.create_pool(
        dsn,
        min_size=settings.read_pool_size,
        max_size=settings.read_pool_size,
        server_settings={**server_settings(settings), **HOT_PLANNER_SETTINGS},
        timeout=settings.db_connect_timeout_s,
        command_timeout=settings.read_timeout_s,
        reset=_keep_session,
    )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The hot pool's reset on release: nothing to send. Hot reads change no session state (no SET, LISTEN,
    cursor or advisory lock), and asyncpg rolls back a transaction left open before calling this; its default
    reset is a round trip of four statements per request, as long as a hot read's own query."""


@asynccontextmanager
async def read_connection(state):
    """A driver connection for a hot read: from the app's read pool, or, when the app was given a sessionmaker
    bound to a connection (as tests bind it, to see their uncommitted data), that connection."""
    if state.read_pool is not None:
        started = time.perf_counter()
        try:
            connection = await state.read_pool.acquire(timeout=state.settings.db_pool_timeout_s)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:  # no connection free, or none to be made
            if isinstance(exc, TimeoutError):
                POOL_TIMEOUTS.labels("read").inc()
            raise database_unavailable() from exc
        finally:
            POOL_WAIT.labels("read").observe(time.perf_counter() - started)
        in_use = POOL_CHECKED_OUT.labels("read")
        in_use.inc()
        try:
            yield connection
        except Exception as exc:
            if connection_lost(exc):
                connection.terminate()  # closed, or waiting on a server that may never answer: not reused
                raise database_unavailable() from exc
            raise
        finally:
            in_use.dec()
            await state.read_pool.release(connection)
    else:
        yield (await state.sessionmaker.kw["bind"].get_raw_connection()).driver_connection
