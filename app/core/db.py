"""The database: declarative base, the one async engine, and the one session dependency."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Request
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from app.core.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_engine(url: str, settings: Settings) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        # No ping per checkout (a round trip per request): a lost connection is detected on use, SQLAlchemy then
        # invalidates the pool, the request gets a 503 and the next ones connect afresh.
        pool_pre_ping=False,
        connect_args={"server_settings": server_settings(settings), "command_timeout": 60},
        hide_parameters=True,  # an error's text never quotes a statement's values (they are personal data)
    )


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
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]


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
    per-connection settings. A checkout through SQLAlchemy's AsyncConnection cost a tenth of such a read
    (bench/RESULTS.md); these reads use no ORM and begin no transaction, so each statement reads committed data.

    Its sessions plan without hash and merge joins (HOT_PLANNER_SETTINGS): every statement on it reads one
    customer's rows (or writes a few served lists), where a nested loop over index scans is the best plan, but
    the planner, estimating rows for an average customer, built a hash table of the product catalog on every
    recommendation: about an eighth of the statement's time in Postgres (bench/RESULTS.md)."""
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    return await asyncpg.create_pool(dsn, min_size=settings.read_pool_size, max_size=settings.read_pool_size,
                                     server_settings={**server_settings(settings), **HOT_PLANNER_SETTINGS},
                                     command_timeout=60, reset=_keep_session)


async def _keep_session(connection: asyncpg.Connection) -> None:
    """The hot pool's reset on release: nothing to send. Hot reads change no session state (no SET, LISTEN,
    cursor or advisory lock), and asyncpg rolls back a transaction left open before calling this; its default
    reset is a round trip of four statements per request, which cost as much as a hot read's own query."""


@asynccontextmanager
async def read_connection(state):
    """A driver connection for a hot read: from the app's read pool, or, when the app was given a sessionmaker
    bound to a connection (as tests bind it, to see their uncommitted data), that connection."""
    if state.read_pool is not None:
        async with state.read_pool.acquire() as connection:
            yield connection
    else:
        yield (await state.sessionmaker.kw["bind"].get_raw_connection()).driver_connection
