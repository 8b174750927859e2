"""One scheduler across every worker process and instance: the leader, chosen by a Postgres session-level advisory
lock (LEADER_LOCK) held on a connection of its own.

Every process runs a `Leadership`: it opens its own asyncpg connection (outside the pools) and tries the lock every
`interval` seconds; the one that holds it is the leader, and the scheduled jobs (app.core.schedule.run_every) run
only there. The leader checks its connection every `interval` seconds as well: when the check fails (the server
ended the session, the network is gone) it stops leading at once and tries again on a new connection.

When the leader dies, its connection closes and Postgres releases the lock with the session; another process takes
it at its next try: within `interval` seconds (TIERWISE_LEADER_INTERVAL_SECONDS, 5 by default) plus a connect. A
leader whose host vanishes without closing its socket is noticed by the server's TCP keepalives
(tcp_keepalives_idle and friends), after which the lock is free in the same way.
"""

import asyncio
import contextlib
import logging

import asyncpg
from prometheus_client import Gauge

log = logging.getLogger(__name__)

LEADER_LOCK = (7314, 1)  # advisory-lock namespace of the scheduler's leader (7310-7313: see app/tiering/runs.py)

IS_LEADER = Gauge(
    "tierwise_scheduler_leader",
    "1 in the process that leads the scheduled jobs (summed over the processes: 1 across an instance that leads)",
    multiprocess_mode="livesum",
)


class Leadership:
    """Whether this process leads the scheduled jobs (`is_leader`), kept by `run()` until cancelled."""

    def __init__(self, dsn: str, interval: float = 5.0, lock: tuple[int, int] = LEADER_LOCK) -> None:
        self.dsn, self.interval, self.lock = dsn, interval, lock
        self.is_leader = False
        self.connection: asyncpg.Connection | None = None
        self._changed = asyncio.Event()

    async def run(self) -> None:
        """Try for the lock, hold it while the connection lives, and try again on a new one when it does not."""
        try:
            while True:
                try:
                    await self._round()
                except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
                    self._lost(type(exc).__name__)
                await asyncio.sleep(self.interval)
        finally:
            self._set(False)
            if self.connection is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self.connection.close(), self.interval)
                self.connection = None

    async def _round(self) -> None:
        if self.is_leader:  # the lock lives as long as the session: check that the session does
            if self.connection is None or self.connection.is_closed():
                raise asyncpg.InterfaceError("the leader's connection closed")
            await self.connection.fetchval("SELECT 1", timeout=self.interval)
            return
        if self.connection is None or self.connection.is_closed():
            self.connection = await asyncpg.connect(self.dsn, timeout=self.interval)
        if await self.connection.fetchval("SELECT pg_try_advisory_lock($1, $2)", *self.lock, timeout=self.interval):
            self._set(True)
            log.info("scheduler leader: this process leads the scheduled jobs")

    def _lost(self, reason: str) -> None:
        if self.is_leader:
            log.warning("scheduler leader: connection lost, no longer leading", extra={"reason": reason})
        self._set(False)
        if self.connection is not None:
            self.connection.terminate()
            self.connection = None

    def _set(self, leading: bool) -> None:
        if leading != self.is_leader:
            self.is_leader = leading
            IS_LEADER.set(1 if leading else 0)
            self._changed.set()
            self._changed = asyncio.Event()

    async def changed(self) -> None:
        """Wait until leadership is taken or lost (for tests and for jobs that wait to lead)."""
        await self._changed.wait()


def database_dsn(sqlalchemy_url: str) -> str:
    """The plain libpq form of the app's asyncpg URL (asyncpg.connect reads no driver name)."""
    from sqlalchemy.engine import make_url

    return make_url(sqlalchemy_url).set(drivername="postgresql").render_as_string(hide_password=False)
