"""monthly partitions of the tables that grow without end

Revision ID: f9c0ffee0030
Revises: f1c0ffee0022
Create Date: 2026-12-06

customer_event and feedback_event (by occurred_at), tier_transition and audit_event (by at), recommendation_list
and recommendation_item (by served_at) become tables
PARTITION BY RANGE on that time, one partition a month (<table>_pYYYYMM) and a DEFAULT partition
(<table>_default) that catches a row outside the months created, so no write ever fails for want of a partition.
The scheduled job (app/core/partitions.py) keeps the months ahead created and drops those past retention.

A partitioned table's primary key and unique indexes must contain the partition column:
- primary keys: customer_event, feedback_event, tier_transition and recommendation_list (customer-keyed):
  (customer_id, id, <time>); recommendation_item: (customer_id, recommendation_id, served_at); audit_event:
  (id, <time>). `id` still comes from the table's own sequence (now owned by the new table), so it
  stays unique without the database checking it across partitions.
- uq_customer_event_customer_id_event_id and uq_feedback_event_customer_id_event_id become
  (customer_id, event_id, occurred_at); the intake statements also skip an event_id the customer already has
  within seven days of its occurred_at, so a retry that stamped a new time still changes nothing (README).
- Postgres allows a foreign key to a partitioned table only on its whole primary key, so
  fk_feedback_event_recommendation_id_recommendation_item is dropped (deliberately): the feedback intake statement
  already looks each item up and stores only events of items it found for that customer (app/feedback/service.py),
  and items are never deleted but by retention, which keeps them as long as feedback. A plain index
  ix_recommendation_item_recommendation serves that lookup. The downgrade restores the key.
- webhook_delivery (by created_at, key (id, created_at)) and its log webhook_attempt (by at, key (id, at)):
  fk_webhook_attempt_delivery_id_webhook_delivery is dropped (deliberately) for the same reason; an attempt is
  recorded only while its delivery exists (the statement checks), and the purge of delivered deliveries now deletes
  their attempts in the same statement instead of by cascade. uq_webhook_delivery_subscription_id_event_id gains
  created_at: an event's deliveries are all made by the one fan-out that marks the event fanned out, under its row
  lock, so they share a created_at and the pair stays unique in fact.
The other foreign keys (to customer, webhook_event, webhook_subscription) refer to plain tables and are kept.

Conversion: the old table is renamed aside, its indexes and keys dropped, the partitioned table created LIKE it
(columns, defaults, checks), partitions from the first month of its rows to three months ahead, rows moved with
INSERT ... SELECT, the sequence handed over, the old table dropped, then every index recreated from its old
definition (unique ones with the partition column added) and the foreign keys re-added under their own names. The
downgrade does the reverse into plain tables. Both take an exclusive lock on each table for the copy: fine for the
demo size; a bank's database would convert with the service stopped or table by table with logical copying.
"""

import re
from collections.abc import Sequence
from datetime import date

import sqlalchemy as sa
from alembic import op

revision: str = "f9c0ffee0030"
down_revision: str | None = "f1c0ffee0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> (partition column, primary key once partitioned, primary key before)
TABLES = {
    "customer_event": ("occurred_at", ("customer_id", "id", "occurred_at"), ("id",)),
    "feedback_event": ("occurred_at", ("customer_id", "id", "occurred_at"), ("id",)),
    "tier_transition": ("at", ("customer_id", "id", "at"), ("id",)),
    "audit_event": ("at", ("id", "at"), ("id",)),
    "recommendation_list": ("served_at", ("customer_id", "id", "served_at"), ("id",)),
    "recommendation_item": ("served_at", ("customer_id", "recommendation_id", "served_at"), ("recommendation_id",)),
    "webhook_delivery": ("created_at", ("id", "created_at"), ("id",)),
    "webhook_attempt": ("at", ("id", "at"), ("id",)),
}
# keys to tables that become partitioned, dropped (a key must name a partitioned table's whole primary key)
DROPPED_KEYS = {
    "fk_feedback_event_recommendation_id_recommendation_item": (
        "feedback_event",
        "FOREIGN KEY (recommendation_id) REFERENCES recommendation_item (recommendation_id) ON DELETE CASCADE",
    ),
    "fk_webhook_attempt_delivery_id_webhook_delivery": (
        "webhook_attempt",
        "FOREIGN KEY (delivery_id) REFERENCES webhook_delivery (id) ON DELETE CASCADE",
    ),
}
AHEAD_MONTHS = 3


def _month(day: date, add: int) -> date:
    months = day.year * 12 + day.month - 1 + add
    return date(months // 12, months % 12 + 1, 1)


def _scalar(sql: str, **params):
    return op.get_bind().execute(sa.text(sql), params).scalar()


def _rows(sql: str, **params):
    return op.get_bind().execute(sa.text(sql), params).all()


def _set_aside(table: str) -> tuple[list[tuple[str, bool, str]], list[tuple[str, str]], str | None]:
    """Rename `table` to <table>_old, dropping its indexes and keys (their names are reused); returns the index
    definitions (name, unique, sql), the foreign keys (name, definition) and the id sequence."""
    indexes = _rows(
        "SELECT i.relname, x.indisunique, pg_get_indexdef(x.indexrelid) FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = CAST(:t AS regclass) "
        "AND NOT x.indisprimary ORDER BY i.relname",
        t=table,
    )
    foreign = _rows(
        "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = CAST(:t AS regclass) AND contype = 'f' ORDER BY conname",
        t=table,
    )
    has_id = _scalar(
        "SELECT count(*) FROM pg_attribute WHERE attrelid = CAST(:t AS regclass) AND attname = 'id'", t=table
    )
    sequence = _scalar("SELECT pg_get_serial_sequence(:t, 'id')", t=table) if has_id else None
    if sequence:
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY NONE")
    op.execute(f"ALTER TABLE {table} RENAME TO {table}_old")
    for name, _definition in foreign:
        op.execute(f"ALTER TABLE {table}_old DROP CONSTRAINT {name}")
    op.execute(f"ALTER TABLE {table}_old DROP CONSTRAINT pk_{table}")
    for name, _unique, _sql in indexes:
        op.execute(f"DROP INDEX {name}")
    return [tuple(i) for i in indexes], [tuple(f) for f in foreign], sequence


def _finish(table: str, indexes, foreign, sequence: str | None, unique_column: str | None) -> None:
    """Move the rows, hand the sequence over, drop the old table, recreate indexes and foreign keys."""
    op.execute(f"INSERT INTO {table} SELECT * FROM {table}_old")
    if sequence:
        op.execute(f"ALTER SEQUENCE {sequence} OWNED BY {table}.id")
    op.execute(f"DROP TABLE {table}_old")
    for _name, unique, sql in indexes:
        if unique and unique_column is not None:
            sql = _with_column(sql, unique_column)
        elif unique:
            sql = _without_last_column(sql)
        op.execute(sql)
    for name, definition in foreign:
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")


def _with_column(sql: str, column: str) -> str:
    assert " WHERE " not in sql, sql
    return re.sub(r"\)$", f", {column})", sql)


def _without_last_column(sql: str) -> str:
    assert " WHERE " not in sql, sql
    return re.sub(r", \w+\)$", ")", sql)


def upgrade() -> None:
    for name, (table, _definition) in DROPPED_KEYS.items():
        op.execute(f"ALTER TABLE {table} DROP CONSTRAINT {name}")
    this_month = _scalar("SELECT (now() AT TIME ZONE 'UTC')::date").replace(day=1)
    for table, (column, key, _before) in TABLES.items():
        indexes, foreign, sequence = _set_aside(table)
        op.execute(
            f"CREATE TABLE {table} (LIKE {table}_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE) "
            f"PARTITION BY RANGE ({column})"
        )
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({', '.join(key)})")
        first = _scalar(f"SELECT (min({column}) AT TIME ZONE 'UTC')::date FROM {table}_old")
        month = min(this_month, first.replace(day=1)) if first is not None else this_month
        while month <= _month(this_month, AHEAD_MONTHS):
            op.execute(
                f"CREATE TABLE {table}_p{month:%Y%m} PARTITION OF {table} "
                f"FOR VALUES FROM ('{month.isoformat()} 00:00:00+00') TO ('{_month(month, 1).isoformat()} 00:00:00+00')"
            )
            month = _month(month, 1)
        op.execute(f"CREATE TABLE {table}_default PARTITION OF {table} DEFAULT")
        _finish(table, indexes, foreign, sequence, column)
    # feedback finds its item by recommendation_id alone (the key was its index until now)
    op.execute("CREATE INDEX ix_recommendation_item_recommendation ON recommendation_item (recommendation_id)")


def downgrade() -> None:
    op.execute("DROP INDEX ix_recommendation_item_recommendation")
    for table in reversed(TABLES):
        indexes, foreign, sequence = _set_aside(table)
        op.execute(
            f"CREATE TABLE {table} (LIKE {table}_old INCLUDING DEFAULTS INCLUDING CONSTRAINTS INCLUDING STORAGE)"
        )
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT pk_{table} PRIMARY KEY ({', '.join(TABLES[table][2])})")
        _finish(table, indexes, foreign, sequence, None)
    for name, (table, definition) in DROPPED_KEYS.items():
        op.execute(f"ALTER TABLE {table} ADD CONSTRAINT {name} {definition}")
