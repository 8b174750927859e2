"""Monthly partitions (app/core/partitions.py): months created ahead, months past retention dropped with their
rows, rows of a month not yet created kept in the default partition and moved when it is, and time filters that
prune partitions."""

import json
from datetime import UTC, date, datetime

from sqlalchemy import text

from app.core.partitions import PARTITIONED, add_months, create_month, existing_months, maintain_partitions

AUDIT = next(t for t in PARTITIONED if t.name == "audit_event")


async def _audit(session, at: datetime, key: str) -> None:
    await session.execute(
        text(
            "INSERT INTO audit_event (at, actor, action, entity_type, entity_key) "
            "VALUES (:at, 'partition-test', 'create', 'partition_test', :key)"
        ),
        {"at": at, "key": key},
    )


async def _keys(session) -> set[str]:
    return set(
        (await session.scalars(text("SELECT entity_key FROM audit_event WHERE entity_type = 'partition_test'"))).all()
    )


def _at(month: date) -> datetime:
    return datetime(month.year, month.month, 15, 12, tzinfo=UTC)


async def test_months_ahead_are_created_for_every_table(session, test_settings):
    today = add_months(date.today().replace(day=1), 9)
    settings = test_settings.model_copy(update={"partitions_ahead_months": 4})
    counts = await maintain_partitions(session, settings, today=today)
    for table in PARTITIONED:
        months = await existing_months(session, table.name)
        assert [add_months(today, n) for n in range(5)] == months[-5:], table.name
    assert counts["partitions_created"] >= 5 * len(PARTITIONED)
    again = await maintain_partitions(session, settings, today=today)
    assert again["partitions_created"] == 0  # nothing to do the second time


async def test_a_month_past_retention_is_dropped_with_its_rows_and_recent_months_kept(session, test_settings):
    this_month = date.today().replace(day=1)
    old, kept = add_months(this_month, -30), add_months(this_month, -2)
    await create_month(session, AUDIT, old)
    await _audit(session, _at(old), "old")
    await _audit(session, _at(kept), "recent")
    await _audit(session, _at(add_months(this_month, -40)), "older-than-any-month")  # in the default partition
    assert await _keys(session) == {"old", "recent", "older-than-any-month"}

    settings = test_settings.model_copy(update={"retention_months_audit": 24})
    counts = await maintain_partitions(session, settings, today=this_month)

    assert old not in await existing_months(session, "audit_event")
    assert await _keys(session) == {"recent"}
    assert counts["partitions_dropped"] >= 1 and counts["default_rows_deleted"] >= 1
    assert await session.scalar(text("SELECT to_regclass(:name)"), {"name": f"audit_event_p{old:%Y%m}"}) is None


async def test_a_row_of_a_month_not_yet_created_waits_in_the_default_partition_and_moves_when_it_is(
    session, test_settings
):
    far = add_months(date.today().replace(day=1), 20)
    await _audit(session, _at(far), "far")
    assert await session.scalar(text("SELECT count(*) FROM audit_event_default WHERE entity_key = 'far'")) == 1

    await maintain_partitions(session, test_settings, today=far)

    assert await session.scalar(text("SELECT count(*) FROM audit_event_default WHERE entity_key = 'far'")) == 0
    partition = f"audit_event_p{far:%Y%m}"
    assert await session.scalar(text(f"SELECT count(*) FROM {partition} WHERE entity_key = 'far'")) == 1
    assert await _keys(session) == {"far"}


def _relations(plan: dict) -> set[str]:
    found = {plan["Relation Name"]} if "Relation Name" in plan else set()
    for child in plan.get("Plans", []):
        found |= _relations(child)
    return found


async def test_a_time_filter_scans_only_the_partitions_of_its_months(session, test_settings):
    this_month = date.today().replace(day=1)
    await maintain_partitions(session, test_settings, today=this_month)
    for table in PARTITIONED:
        low, high = _at(this_month), _at(add_months(this_month, 1))
        where = f"{table.column} >= :low AND {table.column} < :high"
        plan = await session.scalar(
            text(f"EXPLAIN (FORMAT JSON) SELECT * FROM {table.name} WHERE {where}"), {"low": low, "high": high}
        )
        plan = plan if isinstance(plan, list) else json.loads(plan)
        scanned = _relations(plan[0]["Plan"])
        expected = {f"{table.name}_p{this_month:%Y%m}", f"{table.name}_p{add_months(this_month, 1):%Y%m}"}
        assert scanned == expected, (table.name, scanned)
        everything = await session.scalar(text(f"EXPLAIN (FORMAT JSON) SELECT * FROM {table.name}"))
        everything = everything if isinstance(everything, list) else json.loads(everything)
        assert len(_relations(everything[0]["Plan"])) > len(expected) + 1  # without the filter: every partition


async def test_feedback_dropped_past_retention_ends_the_contact_outcomes_stored_with_offer_states(
    session, test_settings
):
    """Feedback the contact policy may count (13 months of retention is within its 400 days) goes without a trigger
    firing: the policy's version moves on, so every stored outcome is counted again (app/recommendations/queries.py)."""
    this_month = date.today().replace(day=1)
    feedback = next(t for t in PARTITIONED if t.name == "feedback_event")
    await maintain_partitions(session, test_settings, today=this_month)
    version = await session.scalar(text("SELECT version FROM contact_policy_version"))
    await maintain_partitions(session, test_settings, today=this_month)  # nothing of feedback's dropped
    assert await session.scalar(text("SELECT version FROM contact_policy_version")) == version
    await create_month(session, feedback, add_months(this_month, -30))
    counts = await maintain_partitions(session, test_settings, today=this_month)
    assert counts["partitions_dropped"] >= 1
    assert await session.scalar(text("SELECT version FROM contact_policy_version")) > version
