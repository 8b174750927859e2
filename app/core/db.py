"""The database: declarative base, the one async engine, and the session dependencies: `SessionDep` (the primary:
writes, and reads that must see them) and `ReadSessionDep` (a read replica in rotation when one is configured,
app/core/replicas.py, else the primary). Both open their session and its transaction the same way."""

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Header, Request
from sqlalchemy import MetaData, event, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase

from app.core.config import Settings
from app.core.errors import ServiceUnavailable
from app.core.hotpool import HotPool
from app.core.metrics import (
    POOL_CHECKED_OUT,
    POOL_SIZE,
    POOL_TIMEOUTS,
    POOL_WAIT,
    MeasuredQueuePool,
    watch_engine_pool,
)
from app.core.replicas import CONSISTENCY_HEADER, Replica, ReplicaSet, format_lsn, parse_lsn, replica_name

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


async def customer_of(session: AsyncSession, model, row_id: int, column=None) -> int | None:
    """The customer of a customer-keyed row (primary key (customer_id, id), or (`column`, id)) that a route names by
    its id alone, found by the plain index on id (under Citus, a lookup on every shard: README, "Scaling"), so that
    what follows (a lock, a write) names (customer_id, id) and stays on the customer's shard. None when there is no
    such row."""
    return await session.scalar(select(model.customer_id if column is None else column).where(model.id == row_id))


def create_engine(
    url: str, settings: Settings, *, batch: bool = False, replica: bool = False, pool_label: str = "engine"
) -> AsyncEngine:
    """The service's engine. `batch` (the CLI's bulk commands): statements may take as long as they need;
    otherwise each gives up after settings.db_command_timeout_s, so that a hung server costs a request a 503.
    `replica`: a read replica's engine, read_replica_pool_size connections, each pinged when checked out (a replica
    that went down is then found before the request reads, which the primary serves instead)."""
    engine = create_async_engine(
        url,
        pool_size=settings.read_replica_pool_size if replica else settings.db_pool_size,
        max_overflow=0 if replica else settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        # No ping per checkout on the primary (a round trip per request): a lost connection is detected on use,
        # SQLAlchemy then invalidates the pool, the request gets a 503 and the next ones connect afresh.
        pool_pre_ping=replica,
        connect_args={
            "server_settings": server_settings(settings),
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": None if batch else settings.db_command_timeout_s,
        },
        hide_parameters=True,  # an error's text never quotes a statement's values (they are personal data)
        poolclass=MeasuredQueuePool,  # times checkouts and counts pool timeouts (app/core/metrics.py)
    )
    event.listen(engine.sync_engine, "handle_error", _drop_connection_on_timeout)
    watch_engine_pool(engine, pool_label)
    return engine


async def warm_pool(engine: AsyncEngine, count: int, warm_ups) -> int:
    """Open `count` of the engine's connections at startup and leave them in its pool, each made ready by `warm_ups`
    (coroutines given the connection, which run the statements a request would, in a transaction rolled back): the
    first requests after a start then find connections with their types introspected, their statements prepared and
    the server's catalog caches for those tables filled, instead of paying that in the request (a 5,000-line import
    on a fresh connection: bench/RESULTS.md, import22). Best effort: a server down at start keeps no instance from
    starting. How many connections it warmed."""

    async def one() -> bool:
        try:
            async with engine.connect() as conn:
                for warm_up in warm_ups:
                    await warm_up(conn)
                await conn.rollback()
            return True
        except (OSError, DBAPIError, TimeoutError):
            return False

    return sum(await asyncio.gather(*(one() for _ in range(count))))


def _drop_connection_on_timeout(context) -> None:
    """A statement that timed out leaves its connection waiting on a server that may never answer: drop it (and
    the pool's other connections, as for any lost connection) instead of sending it a ROLLBACK that would wait
    as long again."""
    if isinstance(context.original_exception, TimeoutError):
        context.is_disconnect = True
        if context.connection is not None and not context.connection.invalidated:
            context.connection.connection.driver_connection.terminate()  # at once, without a polite goodbye


def server_settings(settings: Settings) -> dict[str, str]:
    """Per-connection Postgres settings; the features view reads tierwise.risk_valid_days. TimeZone is UTC: the
    service's days are UTC days (stored days are `AT TIME ZONE 'UTC'`, partitions and quotas UTC), so current_date
    is too, whatever zone the server is configured with."""
    return {
        "application_name": "tierwise",
        "TimeZone": "UTC",
        "tierwise.risk_valid_days": str(settings.risk_assessment_valid_days),
    }


def create_sessionmaker(bind) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(bind, expire_on_commit=False, autoflush=False)


class ReplicaUnavailable(Exception):
    """A replica failed under a read (no connection, lost mid-read, a statement cancelled by recovery): the primary
    serves the read instead (HotReads retries its read; ReplicaRetry a routed request)."""


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session and one transaction per request, on the primary: committed before the response is sent. A
    write's response then carries the consistency token (CONSISTENCY_HEADER) when read replicas are configured."""
    async with request.app.state.sessionmaker() as session:
        async with _request_transaction(session):
            yield session
        await _note_consistency_token(request, session)


ConsistencyTokenHeader = Annotated[
    str | None,
    Header(
        alias=CONSISTENCY_HEADER,
        description="A consistency token a write answered with (its Tierwise-Consistency header): the read then "
        "sees that write (served by a read replica that has replayed it, or by the primary). Without it, a read may "
        "be served by a replica a few seconds behind; a value that is not a token sends the read to the primary.",
        examples=["0/3000060"],
    ),
]


async def consistency_token(token: ConsistencyTokenHeader = None) -> str | None:
    """The caller's consistency token (documented on the reads that take it; the hot path reads it itself)."""
    return token


async def get_read_session(request: Request, token: ConsistencyTokenHeader = None) -> AsyncIterator[AsyncSession]:
    """A session for a read (lists, reports): on a read replica in rotation that has replayed the caller's
    consistency token (app/core/replicas.py), else on the primary; one transaction, as get_session's. A replica
    found down when the session connects is taken out of rotation and the primary serves the read; one lost
    under the read raises ReplicaUnavailable, and ReplicaRetry (app/core/replica_retry.py) runs the request again
    on the primary."""
    state = request.app.state
    replicas: ReplicaSet | None = getattr(state, "replicas", None)
    primary_only = getattr(request.state, PRIMARY_ONLY, False)
    replica = replicas.choose(token) if replicas and not primary_only else None
    session = await _replica_session(replicas, replica) if replica is not None else None
    if session is None:
        async with state.sessionmaker() as session:
            async with _request_transaction(session):
                yield session
        return
    async with session:
        try:
            async with _request_transaction(session):
                yield session
        except Exception as exc:
            if not replica_error(exc):
                raise  # the read's own answer (a 404, a 422) or a bug: the primary would say the same
            replica_failed(replicas, replica, exc)
            raise ReplicaUnavailable() from exc


PRIMARY_ONLY = "primary_only"  # request.state: ReplicaRetry's second run of a read, on the primary


def replica_failure(exc: BaseException) -> bool:
    """Whether an error met on a replica's connection is the replica's, not the read's: the connection lost (or a
    statement timed out: SQLAlchemy then invalidates it), or a statement cancelled by a conflict with recovery."""
    if isinstance(exc, ServiceUnavailable) and exc.__cause__ is not None:
        exc = exc.__cause__
    if connection_lost(exc) or getattr(exc, "connection_invalidated", False) or isinstance(exc, TimeoutError):
        return True
    original = getattr(exc, "orig", None) or exc
    return getattr(original, "sqlstate", None) == "40001" or isinstance(
        original, asyncpg.exceptions.TransactionRollbackError
    )


_DRIVER_ERRORS = (
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.InternalClientError,
    OSError,
    TimeoutError,
    DBAPIError,
    ServiceUnavailable,
    ReplicaUnavailable,
)


def replica_failed(replicas: ReplicaSet, replica: Replica, error: BaseException) -> None:
    """Note a read that failed on `replica` (and is run again on the primary): out of rotation unless the error
    was the server's answer to the statement itself (a Postgres error that is neither a lost connection nor a
    cancellation by recovery), which the primary would likely give too."""
    server_answer = isinstance(error, asyncpg.PostgresError) or isinstance(
        getattr(error, "orig", None), asyncpg.PostgresError
    )
    replicas.failed(replica, error, out=replica_failure(error) or not server_answer)


def replica_error(exc: BaseException) -> bool:
    """Whether a read that failed on a replica is run again on the primary: any error of the database or of the
    driver (a replica going down surfaces as any of them, mid-protocol), not the read's own answers (AppError)."""
    return isinstance(exc, _DRIVER_ERRORS)


async def _replica_session(replicas: ReplicaSet, replica: Replica) -> AsyncSession | None:
    session = replica.sessionmaker()
    try:
        await session.connection()  # checks a connection out (pinged): a replica that is down fails here
    except Exception as exc:  # refused, timed out, terminated: whichever way it is down
        await session.close()
        replica_failed(replicas, replica, exc)
        return None
    return session


@asynccontextmanager
async def _request_transaction(session: AsyncSession) -> AsyncIterator[None]:
    """The request's transaction on `session`: committed when the request succeeds, else rolled back."""
    try:
        yield
    except BaseException as exc:
        if connection_lost(exc):  # met on the driver connection (driver_connection), past SQLAlchemy
            await session.invalidate()
            raise database_unavailable() from exc
        await session.rollback()
        raise
    else:
        await session.commit()


SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


async def _note_consistency_token(request: Request, session: AsyncSession) -> None:
    """After a write's commit, the primary's WAL insert position: it is past the commit record, so a replica that
    has replayed that far has the write (the insert position, not pg_current_wal_lsn's write position, which
    trails the commit record under synchronous_commit=off). Kept on request.state; RequestContextMiddleware sends
    it. One statement on the connection the session already had (outside a transaction), only with replicas."""
    if request.method in SAFE_METHODS or not getattr(request.app.state, "replicas", None):
        return
    try:
        connection = await driver_connection(session)
        lsn = await connection.fetchval("SELECT pg_current_wal_insert_lsn()::text")
        await session.rollback()  # nothing was begun on the server: returns the connection
    except Exception:  # the write is committed: its response goes out, without a token (reads then may lag it)
        await session.invalidate()
        return
    request.state.consistency_token = format_lsn(parse_lsn(lsn))


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
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]

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


class ReplicaConnection(asyncpg.Connection):
    """A connection of a read replica's hot-read pool: `replica` tells a hot read that writes go elsewhere."""

    replica = True


async def create_read_pool(engine: AsyncEngine, settings: Settings, *, replica: bool = False) -> HotPool:
    """The hot reads' own small pool (app/core/hotpool.py), on the engine's server and with its per-connection
    settings. A checkout through SQLAlchemy's AsyncConnection is a measurable share of such a read, and so is one
    through asyncpg's pool (bench/HISTORY.md, bench/RESULTS.md); these reads use no ORM and begin no transaction,
    so each statement reads committed data. Each statement gives up after settings.read_timeout_s. A replica's pool
    opens its connections as used: a replica that is down at start keeps no instance from starting.

    Its sessions plan without hash and merge joins (HOT_PLANNER_SETTINGS): every statement on it reads one
    customer's rows (or writes a few served lists), where a nested loop over index scans is the best plan, but
    the planner, estimating rows for an average customer, built a hash table of the product catalog on every
    recommendation (bench/HISTORY.md)."""
    dsn = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    options = {
        "server_settings": {**server_settings(settings), **HOT_PLANNER_SETTINGS},
        "timeout": settings.db_connect_timeout_s,
        "command_timeout": settings.read_timeout_s,
        "connection_class": ReplicaConnection if replica else asyncpg.Connection,
    }
    pool = HotPool(partial(asyncpg.connect, dsn, **options), settings.read_pool_size)
    if replica:
        return pool
    POOL_SIZE.labels("read").set(settings.read_pool_size)
    return await pool.open(settings.read_pool_size)


# The hot pools' series by label, each looked up once (a label lookup costs more than the observation, per request)
_POOL_SERIES: dict[str, tuple] = {}


def _pool_series(label: str) -> tuple:
    series = _POOL_SERIES.get(label)
    if series is None:
        series = _POOL_SERIES[label] = (POOL_WAIT.labels(label), POOL_CHECKED_OUT.labels(label))
    return series


@asynccontextmanager
async def read_connection(state, replica: Replica | None = None):
    """A driver connection for a hot read: from the read pool of `replica`, or of the primary (app.state.read_pool);
    or, when the app was given a sessionmaker bound to a connection (as tests bind it, to see their uncommitted
    data), that connection. On a replica, a connection that cannot be had or is lost raises ReplicaUnavailable.
    A connection lost, or whose statement timed out or was cancelled, is not used again."""
    pool = replica.pool if replica is not None else state.read_pool
    if pool is None:
        yield (await state.sessionmaker.kw["bind"].get_raw_connection()).driver_connection
        return
    label = "replica" if replica is not None else "read"
    wait, in_use = _pool_series(label)
    started = time.perf_counter()
    try:
        connection = await pool.acquire(state.settings.db_pool_timeout_s)
    except (TimeoutError, OSError, asyncpg.PostgresError) as exc:  # no connection free, or none to be made
        if isinstance(exc, TimeoutError):
            POOL_TIMEOUTS.labels(label).inc()
        raise (ReplicaUnavailable() if replica is not None else database_unavailable()) from exc
    finally:
        wait.observe(time.perf_counter() - started)
    in_use.inc()
    try:
        yield connection
    except Exception as exc:
        if connection_lost(exc) or isinstance(exc, TimeoutError):
            pool.discard(connection)  # closed, or its statement cancelled: not reused
            connection = None
            raise (ReplicaUnavailable() if replica is not None else database_unavailable()) from exc
        if replica is not None and replica_failure(exc):
            raise ReplicaUnavailable() from exc
        raise
    except BaseException:  # cancelled mid-statement: the connection may still be busy with it
        pool.discard(connection)
        connection = None
        raise
    finally:
        in_use.dec()
        if connection is not None:
            pool.release(connection)


async def open_replicas(settings: Settings, primary_url: str) -> ReplicaSet | None:
    """The configured read replicas (settings.read_database_url), each with its engine, sessionmaker and hot-read
    pool, checked once before the first request; None when none is configured."""
    if not settings.read_database_url:
        return None
    from app.core.embedded import to_async_url

    replicas = []
    for url in settings.read_database_url:
        name = replica_name(url)
        engine = create_engine(to_async_url(url), settings, replica=True, pool_label=f"replica {name}")
        replica = Replica(name, engine.url.set(drivername="postgresql").render_as_string(hide_password=False))
        replica.engine, replica.sessionmaker = engine, create_sessionmaker(engine)
        replica.pool = await create_read_pool(engine, settings, replica=True)
        replicas.append(replica)
    primary_dsn = make_url(primary_url).set(drivername="postgresql").render_as_string(hide_password=False)
    replica_set = ReplicaSet(replicas, settings, primary_dsn)
    await replica_set.check()
    return replica_set


async def close_replicas(replicas: ReplicaSet | None) -> None:
    for replica in replicas.replicas if replicas is not None else ():
        await replica.pool.close()
        await replica.engine.dispose()
