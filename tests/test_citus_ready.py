"""The schema stays ready for Citus with customer_id as the distribution column (README, "Scaling"): every
customer-keyed table (one with a customer_id column) has customer_id in its primary key and in every unique
constraint and unique index, and every foreign key between two customer-keyed tables carries customer_id.

NOT_YET lists the customer-keyed tables that break a rule today, each with why. It may only shrink: the test fails
both when a table not listed breaks a rule and when a listed table has become ready (remove it then)."""

from sqlalchemy import Index, Table, UniqueConstraint

from app.models import metadata

NOT_YET = {
    # keyed by their own id alone because the API addresses them by id without the customer
    # (GET /v1/feedback/complaints/{complaint_id} and its transitions, GET /v1/feedback/surveys/{survey_id},
    # PATCH /v1/manager-tasks/{task_id}): the key becomes (customer_id, id) once those routes name the customer,
    # or the lookups fan out to every shard; complaint_transition then gains customer_id as well
    "complaint",
    "survey_response",
    "manager_task",
    # an import's staged lines, keyed by (import_id, line): customer_id is the customer a line resolved to, NULL
    # on a line rejected before it named one; staging, kept on the coordinator with its import header (local tables)
    "holding_import_line",
    # keyed by (community, event): a community's activity spans customers; co-located by community instead
    "community_activity_event",
    # the outbox and its deliveries serve events of no customer as well (customer_id NULL): they stay on the
    # coordinator as local tables, or are split into per-customer and global outboxes
    "webhook_event",
    "webhook_delivery",
}


def _customer_keyed(table: Table) -> bool:
    return "customer_id" in table.columns


def _problems(table: Table) -> list[str]:
    problems = []
    if "customer_id" not in table.primary_key.columns:
        problems.append("primary key without customer_id")
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and "customer_id" not in constraint.columns:
            problems.append(f"unique constraint {constraint.name} without customer_id")
    for column in table.columns:
        if column.unique and column.name != "customer_id":
            problems.append(f"unique column {column.name} without customer_id")
    for index in table.indexes:
        if isinstance(index, Index) and index.unique and "customer_id" not in index.columns:
            problems.append(f"unique index {index.name} without customer_id")
    for key in table.foreign_key_constraints:
        if _customer_keyed(key.referred_table) and "customer_id" not in key.column_keys:
            problems.append(f"foreign key {key.name} to {key.referred_table.name} without customer_id")
    return problems


def _not_ready() -> dict[str, list[str]]:
    tables = [t for t in metadata.sorted_tables if _customer_keyed(t)]
    return {t.name: p for t in tables if (p := _problems(t))}


def test_customer_keyed_tables_carry_customer_id_in_keys_and_unique_indexes():
    not_ready = _not_ready()
    unexpected = {name: problems for name, problems in not_ready.items() if name not in NOT_YET}
    assert unexpected == {}, "customer-keyed tables not ready for distribution by customer_id"


def test_not_yet_only_lists_tables_still_not_ready():
    ready_now = sorted(name for name in NOT_YET if name not in _not_ready())
    assert ready_now == [], "these tables are ready now: remove them from NOT_YET"


def test_the_rules_catch_what_they_are_for():
    from sqlalchemy import BigInteger, Column, ForeignKeyConstraint, MetaData

    scratch = MetaData()
    parent = Table(
        "parent",
        scratch,
        Column("customer_id", BigInteger, primary_key=True),
        Column("id", BigInteger, primary_key=True),
    )
    child = Table(
        "child",
        scratch,
        Column("id", BigInteger, primary_key=True),
        Column("customer_id", BigInteger),
        Column("parent_id", BigInteger),
        Column("code", BigInteger, unique=True),
        ForeignKeyConstraint(["parent_id"], ["parent.id"], name="fk_child_parent"),
    )
    assert _problems(parent) == []
    problems = _problems(child)
    assert "primary key without customer_id" in problems
    assert "unique column code without customer_id" in problems
    assert any(p.startswith("foreign key fk_child_parent") for p in problems)
