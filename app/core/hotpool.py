"""The hot reads' connection pool: asyncpg connections handed out and taken back without a round trip, a task or a
timer when one is free.

asyncpg's own pool wraps every checkout in a proxy, arms an inactivity timer on each release and releases through
`asyncio.shield` (a task per request): on GET .../tiers that was a fifth of the server's CPU a request
(bench/RESULTS.md, tiers22). Hot reads change no session state (no SET, LISTEN, cursor or advisory lock) and leave
no transaction open, so a connection goes back as it is, and one that may not be clean (closed, inside a
transaction, its statement cancelled or timed out: `discard`) is terminated and its place opened again on demand.
"""

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable

import asyncpg


class HotPool:
    """At most `size` connections opened by `connect`, `min_size` of them at `open`; the rest as used."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], size: int) -> None:
        self._connect = connect
        self._size = size
        self._free: list[asyncpg.Connection] = []  # idle, the last released first (its pages are warm)
        self._vacant = size  # places for a connection not opened (yet, or again after one was discarded)
        self._waiters: deque[asyncio.Future] = deque()  # each gets a connection, or None: a place to open one in
        self._in_use: set[asyncpg.Connection] = set()
        self._closed = False

    async def open(self, min_size: int) -> "HotPool":
        opened = await asyncio.gather(*(self._connect() for _ in range(min_size)))
        self._vacant -= len(opened)
        self._free.extend(opened)
        return self

    def get_size(self) -> int:
        return self._size - self._vacant

    async def acquire(self, timeout: float | None = None) -> asyncpg.Connection:
        """A connection, without awaiting anything when one is free; else a new one where there is a place, else
        the next one released. TimeoutError when none could be had within `timeout` seconds."""
        if self._closed:
            raise asyncpg.InterfaceError("the pool is closed")
        free = self._free
        while free:
            connection = free.pop()
            if not connection.is_closed():
                self._in_use.add(connection)
                return connection
            self._vacant += 1
        async with asyncio.timeout(timeout):
            if self._vacant:
                self._vacant -= 1
                return await self._open()
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                connection = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():  # handed one just as the wait ended: pass it on
                    self._hand(waiter.result())
                elif waiter in self._waiters:  # (a cancelled one may have been passed over by _hand already)
                    self._waiters.remove(waiter)
                raise
            if connection is None:  # a place freed by a discarded connection
                return await self._open()
            self._in_use.add(connection)
            return connection

    async def _open(self) -> asyncpg.Connection:
        """A new connection in a place this caller holds (given back if it cannot be opened)."""
        try:
            connection = await self._connect()
        except BaseException:
            self._hand(None)
            raise
        self._in_use.add(connection)
        return connection

    def release(self, connection: asyncpg.Connection) -> None:
        """The connection back: to the next waiter, or idle. One that may not be clean is discarded."""
        self._in_use.discard(connection)
        if connection.is_closed() or connection.is_in_transaction() or self._closed:
            connection.terminate()
            self._hand(None)
            return
        self._hand(connection)

    def discard(self, connection: asyncpg.Connection) -> None:
        """A connection not to be used again (lost, or its statement cancelled or timed out): terminated at once."""
        self._in_use.discard(connection)
        connection.terminate()
        self._hand(None)

    def _hand(self, connection: asyncpg.Connection | None) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        if connection is None:
            self._vacant += 1
        elif self._closed:
            connection.terminate()
        else:
            self._free.append(connection)

    async def close(self) -> None:
        """Closes the idle connections, terminates those in use (the lifespan ends after the last request)."""
        self._closed = True
        free, self._free = self._free, []
        await asyncio.gather(*(connection.close() for connection in free), return_exceptions=True)
        for connection in list(self._in_use):
            connection.terminate()
        self._in_use.clear()
