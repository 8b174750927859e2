"""What a database error says about the request that met it: the database is away (a 503 to retry), a value of
the request cannot be stored (422), or another request changed the same rows while it ran (409). Read through every
layer that wraps the driver's error (app.core.errors.handle_unexpected answers with these)."""

from collections.abc import Iterator

import asyncpg
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """exc and the errors it wraps: SQLAlchemy's DBAPIError over the adapted driver error over asyncpg's own
    (`orig`, `driver_exception`, `__cause__`). The hot reads raise asyncpg's errors unwrapped."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = getattr(current, "orig", None) or getattr(current, "driver_exception", None) or current.__cause__


def sqlstate(exc: BaseException) -> str | None:
    for error in _chain(exc):
        state = getattr(error, "sqlstate", None) or getattr(error, "pgcode", None)
        if isinstance(state, str):
            return state
    return None


def constraint_name(exc: BaseException) -> str | None:
    """The constraint a database error names (a table's key or reference: no value), or None."""
    for error in _chain(exc):
        if isinstance(name := getattr(error, "constraint_name", None), str):
            return name
    return None


# Postgres error classes that say the database is away, not that the request is wrong: connection exceptions
# (08), insufficient resources (53, e.g. too many connections), operator intervention (57: shutting down,
# "the database system is shutting down", terminated by an administrator, a cancelled or timed-out statement)
# and system errors (58, e.g. I/O).
UNAVAILABLE_STATE_CLASSES = ("08", "53", "57", "58")


def database_unavailable(exc: BaseException) -> bool:
    """Whether exc means the database cannot serve now (a 503 to retry), whatever layer raised it."""
    for error in _chain(exc):
        if isinstance(error, (PoolTimeoutError, InterfaceError, ConnectionError, OSError)):
            return True  # OSError covers TimeoutError: the driver's command timeout
        if isinstance(error, DBAPIError) and error.connection_invalidated:
            return True
        if isinstance(error, asyncpg.InterfaceError):
            return True  # the driver's connection is closed
    state = sqlstate(exc)
    return state is not None and state.startswith(UNAVAILABLE_STATE_CLASSES)


# Postgres data exceptions that only a value from the request can cause: a NUL character in text or JSON, a number
# or date out of the column's range, a string longer than its column, text that is not of the column's type, and
# the driver's own refusal of an argument it cannot send ("invalid input for query argument", 22000).
UNSTORABLE_VALUE_STATES = {
    "22000": "a value out of range for the database",
    "22021": "a character the database cannot store (such as NUL, \\u0000)",
    "22P05": "a character the database cannot store (such as NUL, \\u0000)",
    "22003": "a number out of range",
    "22008": "a date or time out of range",
    "22001": "a string longer than allowed",
    "22P02": "a value of the wrong form",
}


def unstorable_value(exc: BaseException) -> str | None:
    """What the database (or the driver, before sending it) refused in a value of the request, or None."""
    return UNSTORABLE_VALUE_STATES.get(sqlstate(exc) or "")


# Postgres errors a request meets when another one changed the same rows while it ran: a key another request
# committed first (23505, where no domain check names it), a row it refers to deleted meanwhile (23503), a
# serialization failure or a deadlock (40001, 40P01). The request was valid; the state moved under it: 409.
CONCURRENT_CHANGE_STATES = {
    "23505": "another request created the same key meanwhile",
    "23503": "a document it refers to was removed meanwhile",
    "40001": "another request changed the same documents meanwhile",
    "40P01": "another request changed the same documents meanwhile",
}


def concurrent_change(exc: BaseException) -> str | None:
    """What a concurrent request changed under this one, or None."""
    return CONCURRENT_CHANGE_STATES.get(sqlstate(exc) or "")
