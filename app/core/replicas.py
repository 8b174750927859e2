"""Read replicas (TIERWISE_READ_DATABASE_URL): streaming standbys the hot reads, lists and reports are served from,
kept in rotation by a background health check, with read-your-writes through a consistency token.

Rotation: each instance checks every replica every `read_health_interval_s` on a line of its own (never per
request), each check bounded by `read_health_timeout_s`. A replica is in rotation while it answers, is in recovery
(a promoted standby is taken out: it no longer follows the primary), and lags by at most `read_max_lag_seconds`
(since the last replayed commit, while WAL waits to be replayed) and `read_max_lag_bytes` (the primary's WAL
position less the replica's replay position; 0: no bound). A replica that fails under a request is taken out at
once, until its next good check. With none in rotation, reads are served by the primary.

Read your writes: every write response carries `Tierwise-Consistency`, the primary's WAL position after the commit
(a pg_lsn such as 0/3000060). A read that sends it back is served by a replica whose replay position, as last
checked, is at least that far, and otherwise by the primary. The checked position only trails the real one, so
such a read never misses the write (it may go to the primary more often than it must).

Metrics (/metrics): tierwise_read_replica_in_rotation, tierwise_read_replica_lag_seconds and _lag_bytes per replica,
tierwise_read_replica_reads_total per replica (reads a replica was chosen for), tierwise_read_fallbacks_total by
reason (none_in_rotation, behind_token, replica_failed: reads the primary served instead).
"""

import asyncio
import contextlib
import itertools
import logging
import re
from dataclasses import dataclass, field

import asyncpg
from prometheus_client import Counter, Gauge
from sqlalchemy.engine import make_url

from app.core.config import Settings
from app.core.hotpool import HotPool

logger = logging.getLogger("tierwise.replicas")

CONSISTENCY_HEADER = "Tierwise-Consistency"
_LSN = re.compile(r"([0-9A-Fa-f]{1,8})/([0-9A-Fa-f]{1,8})")

IN_ROTATION = Gauge(
    "tierwise_read_replica_in_rotation",
    "1 while a read replica serves reads, 0 while it is out of rotation (down, lagging or promoted)",
    ["replica"],
    multiprocess_mode="livemin",
)
LAG_SECONDS = Gauge(
    "tierwise_read_replica_lag_seconds",
    "A read replica's replay lag at its last check (since its last replayed commit, while WAL waits)",
    ["replica"],
    multiprocess_mode="livemax",
)
LAG_BYTES = Gauge(
    "tierwise_read_replica_lag_bytes",
    "WAL bytes the primary has written that a read replica had not replayed, at its last check",
    ["replica"],
    multiprocess_mode="livemax",
)
REPLICA_READS = Counter("tierwise_read_replica_reads_total", "Reads sent to a read replica", ["replica"])
FALLBACKS = Counter(
    "tierwise_read_fallbacks_total",
    "Reads the primary served in place of a replica: none_in_rotation, behind_token (no replica had replayed the "
    "caller's consistency token), replica_failed (the replica failed under the read, which was retried)",
    ["reason"],
)

_CHECK_REPLICA = """
SELECT pg_is_in_recovery() AS in_recovery,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       CASE WHEN pg_last_wal_receive_lsn() IS NOT DISTINCT FROM pg_last_wal_replay_lsn() THEN 0
            ELSE coalesce(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()), 0)
       END::float8 AS lag_seconds
"""


def parse_lsn(text: str | None) -> int | None:
    """A pg_lsn's text (`16/B374D848`) as a number; None for anything else."""
    if not text:
        return None
    match = _LSN.fullmatch(text.strip())
    if match is None:
        return None
    return (int(match[1], 16) << 32) | int(match[2], 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def replica_name(url: str) -> str:
    """host:port/database: how metrics, logs and /readyz name a replica (never its credentials)."""
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}/{parsed.database or ''}"


@dataclass(eq=False)
class Replica:
    """One replica: its engine and sessionmaker (read sessions), its hot-read pool, and its last check."""

    name: str
    dsn: str  # plain postgresql:// URL
    engine: object = None
    sessionmaker: object = None
    pool: HotPool | None = None
    in_rotation: bool = False
    replay_lsn: int = 0
    lag_seconds: float | None = None
    lag_bytes: int | None = None
    error: str | None = None
    _check_connection: asyncpg.Connection | None = field(default=None, repr=False)

    def out(self, error: str) -> None:
        if self.in_rotation:
            logger.warning("read replica out of rotation", extra={"replica": self.name, "reason": error})
        self.in_rotation, self.error = False, error
        IN_ROTATION.labels(self.name).set(0)

    def state(self) -> dict:
        return {
            "name": self.name,
            "in_rotation": self.in_rotation,
            "lag_seconds": None if self.lag_seconds is None else round(self.lag_seconds, 3),
            "lag_bytes": self.lag_bytes,
            "replay_lsn": format_lsn(self.replay_lsn) if self.replay_lsn else None,
            "error": self.error,
        }


class ReplicaSet:
    """The configured replicas of one process: which may serve a read now, and the check that keeps that true."""

    def __init__(self, replicas: list[Replica], settings: Settings, primary_dsn: str) -> None:
        self.replicas = replicas
        self.settings = settings
        self.primary_dsn = primary_dsn
        self._primary_connection: asyncpg.Connection | None = None
        self._turn = itertools.count()
        for replica in replicas:
            IN_ROTATION.labels(replica.name).set(0)

    def choose(self, token: str | None = None) -> Replica | None:
        """The replica to serve a read (round robin over those in rotation that have replayed `token`, the caller's
        consistency token), or None: the primary serves it (a token that is not a pg_lsn also goes there)."""
        candidates = [replica for replica in self.replicas if replica.in_rotation]
        if not candidates:
            FALLBACKS.labels("none_in_rotation").inc()
            return None
        if token is not None:
            lsn = parse_lsn(token)
            candidates = [replica for replica in candidates if lsn is not None and replica.replay_lsn >= lsn]
            if not candidates:
                FALLBACKS.labels("behind_token").inc()
                return None
        replica = candidates[next(self._turn) % len(candidates)]
        REPLICA_READS.labels(replica.name).inc()
        return replica

    def failed(self, replica: Replica, error: BaseException, *, out: bool = True) -> None:
        """A read failed on the replica and is run again on the primary; `out`: the replica's fault (not the
        server's answer to the statement itself), so it is out of rotation until its next good check
        (app.core.db.replica_failed decides)."""
        if out:
            replica.out(f"failed under a read: {type(error).__name__}")
        FALLBACKS.labels("replica_failed").inc()

    # ---- the background check ---------------------------------------------------------------------------------
    async def run(self) -> None:
        """Check every replica each `read_health_interval_s`, until cancelled."""
        try:
            while True:
                await asyncio.sleep(self.settings.read_health_interval_s)
                try:
                    await self.check()
                except Exception:  # never the end of the checks: the next round may see the replicas again
                    logger.exception("read replica check failed")
                    for replica in self.replicas:
                        replica.out("check failed")
        finally:
            await self._close_check_connections()

    async def check(self) -> None:
        """One round: the primary's WAL position, then every replica at once, each within the timeout."""
        primary_lsn = await self._primary_lsn()
        await asyncio.gather(*(self._check(replica, primary_lsn) for replica in self.replicas))

    async def _query(self, connection: asyncpg.Connection | None, dsn: str, query: str):
        timeout = self.settings.read_health_timeout_s
        if connection is None or connection.is_closed():
            connection = await asyncpg.connect(
                dsn, timeout=timeout, server_settings={"application_name": "tierwise-replica-check"}
            )
        try:
            return connection, await connection.fetchrow(query, timeout=timeout)
        except BaseException:
            connection.terminate()  # it may be waiting on a server that never answers: not reused
            raise

    async def _primary_lsn(self) -> int | None:
        try:
            self._primary_connection, row = await self._query(
                self._primary_connection, self.primary_dsn, "SELECT pg_current_wal_insert_lsn()::text AS lsn"
            )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
            self._primary_connection = None
            return None  # the replicas are judged on their replay lag in seconds alone
        return parse_lsn(row["lsn"])

    async def _check(self, replica: Replica, primary_lsn: int | None) -> None:
        settings = self.settings
        try:
            replica._check_connection, row = await self._query(replica._check_connection, replica.dsn, _CHECK_REPLICA)
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            replica._check_connection = None
            replica.out(f"unreachable: {type(exc).__name__}")
            return
        if not row["in_recovery"]:
            replica.out("not in recovery (promoted, or not a standby)")
            return
        replica.replay_lsn = max(replica.replay_lsn, parse_lsn(row["replay_lsn"]) or 0)
        replica.lag_seconds = max(row["lag_seconds"], 0.0)
        replica.lag_bytes = max(primary_lsn - replica.replay_lsn, 0) if primary_lsn is not None else None
        LAG_SECONDS.labels(replica.name).set(replica.lag_seconds)
        if replica.lag_bytes is not None:
            LAG_BYTES.labels(replica.name).set(replica.lag_bytes)
        if replica.lag_seconds > settings.read_max_lag_seconds:
            replica.out(f"lags {replica.lag_seconds:.1f} s (bound {settings.read_max_lag_seconds} s)")
        elif settings.read_max_lag_bytes and (replica.lag_bytes or 0) > settings.read_max_lag_bytes:
            replica.out(f"lags {replica.lag_bytes} bytes (bound {settings.read_max_lag_bytes})")
        else:
            if not replica.in_rotation:
                logger.info("read replica in rotation", extra={"replica": replica.name})
            replica.in_rotation, replica.error = True, None
            IN_ROTATION.labels(replica.name).set(1)

    async def _close_check_connections(self) -> None:
        for connection in [self._primary_connection, *(replica._check_connection for replica in self.replicas)]:
            if connection is not None:
                with contextlib.suppress(Exception):
                    connection.terminate()

    def states(self) -> list[dict]:
        return [replica.state() for replica in self.replicas]
