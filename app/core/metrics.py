"""Prometheus metrics beyond the HTTP ones (app/core/middleware.py): both connection pools, business counters,
tier runs and scheduled jobs; and the registry /metrics reads.

Several worker processes (`tierwise serve --workers N`): each process counts into files under
PROMETHEUS_MULTIPROC_DIR (the serve command makes a fresh directory when N > 1 and none is set), and /metrics,
whichever process answers it, sums them (prometheus_client's multiprocess mode). Gauges say how they combine:
pool figures add up over the live processes, times take the latest.

Counters that report a change written in a transaction (transitions, feedback) are counted when that transaction
commits (`count_on_commit`): a rolled-back write counts nothing.
"""

import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import AsyncAdaptedQueuePool

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

# ---- connection pools: "engine" (SQLAlchemy's, every write and most reads) and "read" (the hot reads' asyncpg) --
POOL_CHECKED_OUT = Gauge("tierwise_db_pool_checked_out", "Connections in use", ["pool"], multiprocess_mode="livesum")
POOL_SIZE = Gauge("tierwise_db_pool_size", "Configured pool size", ["pool"], multiprocess_mode="livesum")
POOL_OVERFLOW = Gauge(
    "tierwise_db_pool_overflow", "Connections beyond the pool size", ["pool"], multiprocess_mode="livesum"
)
POOL_WAIT = Histogram(
    "tierwise_db_pool_wait_seconds",
    "Time a request waited for a pooled connection (including opening one)",
    ["pool"],
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
POOL_TIMEOUTS = Counter(
    "tierwise_db_pool_timeouts_total", "Requests that got no connection within the pool timeout", ["pool"]
)

# ---- business ----------------------------------------------------------------------------------------------------
RECOMMENDATION_LISTS = Counter(
    "tierwise_recommendation_lists_served_total", "Recommendation lists served (and stored), by channel", ["channel"]
)
FEEDBACK_EVENTS = Counter(
    "tierwise_feedback_events_total",
    "Feedback events received, by outcome (accepted, duplicate, rejected)",
    ["outcome"],
)
TIER_TRANSITIONS = Counter(
    "tierwise_tier_transitions_total",
    "Tier changes committed, by direction (upgrade, downgrade, initial)",
    ["direction"],
)
TIER_RUN_SECONDS = Histogram(
    "tierwise_tier_run_duration_seconds",
    "Duration of batch tier runs, by outcome",
    ["status"],
    buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200),
)
JOB_LAST_SUCCESS = Gauge(
    "tierwise_job_last_success_timestamp_seconds",
    "Unix time of each scheduled job's last successful round",
    ["job"],
    multiprocess_mode="max",
)
RATE_LIMITED = Counter(
    "tierwise_rate_limited_total",
    "Requests answered 429, by the calling key's role (none: failed authentications)",
    ["role"],
)


def registry():
    """What /metrics exposes: this process's registry, or every process's figures in multiprocess mode."""
    if os.environ.get(MULTIPROC_ENV):
        collected = CollectorRegistry()
        multiprocess.MultiProcessCollector(collected)
        return collected
    return REGISTRY


def exposition() -> tuple[bytes, str]:
    return generate_latest(registry()), CONTENT_TYPE_LATEST


def process_exited() -> None:
    """Drop this process's live gauges from the multiprocess figures (at shutdown)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())


# ---- the engine's pool ------------------------------------------------------------------------------------------
class MeasuredQueuePool(AsyncAdaptedQueuePool):
    """SQLAlchemy's async queue pool, timing each checkout and counting those that time out."""

    label = "engine"

    def _do_get(self):
        started = time.perf_counter()
        try:
            return super()._do_get()
        except sa_exc.TimeoutError:
            POOL_TIMEOUTS.labels(self.label).inc()
            raise
        finally:
            POOL_WAIT.labels(self.label).observe(time.perf_counter() - started)


def watch_engine_pool(engine, label: str = "engine") -> None:
    """Keep the engine pool's gauges current on every checkout and checkin (no scrape-time callback: in multiprocess
    mode the scraping process cannot see another's pool). `label`: the pool's name in the metrics ("engine", or
    a read replica's)."""
    pool = engine.sync_engine.pool
    if not hasattr(pool, "checkedout"):
        return
    pool.label = label
    POOL_SIZE.labels(label).set(pool.size())

    def update(*_) -> None:
        POOL_CHECKED_OUT.labels(label).set(pool.checkedout())
        POOL_OVERFLOW.labels(label).set(max(pool.overflow(), 0))

    event.listen(engine.sync_engine, "checkout", update)
    event.listen(engine.sync_engine, "checkin", update)
    update()


# ---- counted when the transaction commits -----------------------------------------------------------------------
_PENDING = "tierwise_metrics_on_commit"


def count_on_commit(session: AsyncSession | Session, child, amount: float = 1) -> None:
    """Increment a metric (a labelled child) when the session's transaction commits; never if it rolls back."""
    if amount:
        sync = session.sync_session if isinstance(session, AsyncSession) else session
        sync.info.setdefault(_PENDING, []).append((child, amount))


@event.listens_for(Session, "after_commit")
def _counted(session: Session) -> None:
    for child, amount in session.info.pop(_PENDING, ()):
        child.inc(amount)


@event.listens_for(Session, "after_rollback")
def _dropped(session: Session) -> None:
    session.info.pop(_PENDING, None)
