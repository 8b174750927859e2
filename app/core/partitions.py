"""Monthly partitions of the tables that grow without end (migrations/versions/2026-12-06_monthly_partitions.py):
the scheduled job that creates the months ahead and detaches and drops those past each table's retention.

Each table is PARTITION BY RANGE on its time column, one partition a month named <table>_pYYYYMM (bounds in UTC),
and a DEFAULT partition <table>_default. Writes never fail for want of a partition: a row in a month the job has
not created (a timestamp far in the future, or older than the oldest month kept) lands in the default partition.
The job keeps this month and TIERWISE_PARTITIONS_AHEAD_MONTHS ahead created, so in normal running the default
partition stays empty; when it does hold rows of a month being created, they are moved into the new month first
(a month is created as a table of its own, filled from the default partition, then attached). Past retention a
month is detached and dropped (its rows are gone with it), and rows of the default partition older than the
cutoff are deleted.

The once-per-event rule of customer_event and feedback_event: their unique index is (customer_id, event_id,
occurred_at), so the intake statements also skip an event whose event_id the customer already has within seven
days of its occurred_at (a retry that stamped a new time), probing only the partitions of those days.

Every instance runs the job on the schedule; a transaction-level advisory lock makes concurrent runs take turns,
and each step is a no-op once done, so two instances never do the work twice."""

import re
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.core.config import Settings

PARTITION_NAME = re.compile(r"^(?P<table>\w+?)_(p(?P<month>\d{6})|default)$")
ADVISORY_LOCK = 0x7061727473  # "parts": serialises concurrent runs of the job across instances


@dataclass(frozen=True)
class PartitionedTable:
    name: str
    column: str  # the time the table is partitioned by
    retention: str  # the Settings field: months kept
    after_removal: str | None = None  # SQL run once rows went past retention (dropped or deleted: no trigger fires)


# Feedback the contact policy may count went without its triggers firing: every contact outcome stored with an offer
# state is counted again (app/recommendations/queries.py).
_CONTACT_POLICY_CHANGED = "UPDATE contact_policy_version SET version = nextval('contact_policy_version_seq')"

PARTITIONED = (
    PartitionedTable("customer_event", "occurred_at", "retention_months_events"),
    PartitionedTable("feedback_event", "occurred_at", "retention_months_events", _CONTACT_POLICY_CHANGED),
    PartitionedTable("tier_transition", "at", "retention_months_transitions"),
    PartitionedTable("audit_event", "at", "retention_months_audit"),
    PartitionedTable("recommendation_list", "served_at", "retention_months_events"),
    PartitionedTable("webhook_delivery", "created_at", "retention_months_webhooks"),
    PartitionedTable("webhook_attempt", "at", "retention_months_webhooks"),
)
PARTITIONED_NAMES = frozenset(t.name for t in PARTITIONED)


def is_partition(name: str) -> bool:
    """Whether `name` is one of the managed partitions (not in the models: autogenerate must not compare them)."""
    match = PARTITION_NAME.match(name)
    return bool(match) and match["table"] in PARTITIONED_NAMES


def add_months(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def partition_name(table: str, month: date) -> str:
    return f"{table}_p{month:%Y%m}"


def _bound(month: date) -> str:
    return f"{month.isoformat()} 00:00:00+00"


async def existing_months(session: AsyncSession, table: str) -> list[date]:
    """The months that have a partition of `table`, in order."""
    names = (
        await session.scalars(
            text(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = CAST(:table AS regclass)"
            ),
            {"table": table},
        )
    ).all()
    months = []
    for name in names:
        match = PARTITION_NAME.match(name)
        if match and match["month"]:
            months.append(date(int(match["month"][:4]), int(match["month"][4:]), 1))
    return sorted(months)


async def create_month(session: AsyncSession, table: PartitionedTable, month: date) -> None:
    """Create `month`'s partition of `table`, moving into it any rows of that month the default partition holds."""
    name, low, high = partition_name(table.name, month), _bound(month), _bound(add_months(month, 1))
    await session.execute(text(f"CREATE TABLE {name} (LIKE {table.name} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"))
    await session.execute(
        text(
            f"WITH moved AS (DELETE FROM {table.name}_default WHERE {table.column} >= :low AND {table.column} < :high "
            f"RETURNING *) INSERT INTO {name} SELECT * FROM moved"
        ),
        {"low": datetime.fromisoformat(low), "high": datetime.fromisoformat(high)},
    )
    await session.execute(
        text(f"ALTER TABLE {table.name} ATTACH PARTITION {name} FOR VALUES FROM ('{low}') TO ('{high}')")
    )


async def drop_month(session: AsyncSession, table: PartitionedTable, month: date) -> None:
    name = partition_name(table.name, month)
    await session.execute(text(f"ALTER TABLE {table.name} DETACH PARTITION {name}"))
    await session.execute(text(f"DROP TABLE {name}"))


async def maintain_partitions(session: AsyncSession, settings: Settings, today: date | None = None) -> dict:
    """Create this month and the months ahead of every partitioned table, drop the months past its retention and
    delete the default partition's rows older than the cutoff. Returns the counts. Flushes, never commits."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
    if today is None:
        today = await session.scalar(text("SELECT (now() AT TIME ZONE 'UTC')::date"))
    this_month = today.replace(day=1)
    counts = {"partitions_created": 0, "partitions_dropped": 0, "default_rows_deleted": 0}
    for table in PARTITIONED:
        have = set(await existing_months(session, table.name))
        for ahead in range(settings.partitions_ahead_months + 1):
            month = add_months(this_month, ahead)
            if month not in have:
                await create_month(session, table, month)
                counts["partitions_created"] += 1
        cutoff = add_months(this_month, -getattr(settings, table.retention))
        dropped = False
        for month in sorted(have):
            if add_months(month, 1) <= cutoff:
                await drop_month(session, table, month)
                counts["partitions_dropped"] += 1
                dropped = True
        deleted = await session.execute(
            text(f"DELETE FROM {table.name}_default WHERE {table.column} < :cutoff"),
            {"cutoff": datetime.fromisoformat(_bound(cutoff))},
        )
        counts["default_rows_deleted"] += deleted.rowcount
        if table.after_removal and (dropped or deleted.rowcount):
            await session.execute(text(table.after_removal))
    return counts


async def run_partition_maintenance(sessionmaker: async_sessionmaker[AsyncSession], settings: Settings) -> dict:
    """The scheduled job (TIERWISE_PARTITION_MAINTENANCE_MINUTES): one transaction."""
    async with sessionmaker() as session, session.begin():
        return await maintain_partitions(session, settings)
