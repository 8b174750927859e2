"""The schema stays ready for Citus with customer_id as the distribution column (README, "Scaling"): every
customer-keyed table (one with a customer_id column, or named in DISTRIBUTION_COLUMN with its column holding a
customer's id) is distributed by it, and has that column in its primary key and in every unique constraint and
unique index, and every foreign key between two distributed tables pairs their distribution columns.

LOCAL names the customer-keyed tables that stay on the coordinator as local tables (each with why; the README's
"Local to the coordinator" names the same): the key rules do not apply to them, but no foreign key may join one
with a distributed table, either way (Citus has none between a local and a distributed table).

NOT_YET lists the customer-keyed tables that break a rule today, each with why. It may only shrink: the test fails
both when a table not listed breaks a rule and when a listed table has become ready (remove it then)."""

import re
from pathlib import Path

from sqlalchemy import Index, Table, UniqueConstraint

from app.models import metadata

LOCAL = {
    "holding_import_line": "an import's staged lines, keyed by (import_id, line) with their import header "
    "(holding_import, local): customer_id is the customer a line resolved to, NULL on a line rejected before it "
    "named one; the merge reads them set-based on the coordinator (app/customers/holdings_import.py)",
    "webhook_event": "the outbox has events of no customer (product.sold_out: customer_id NULL) and is dispatched "
    "in order across customers; split into a distributed per-customer outbox and a local one to distribute it",
    "webhook_delivery": "the outbox's deliveries, with their events and subscriptions (local)",
}

DISTRIBUTION_COLUMN = {"customer": "id", "referral": "referrer_id"}
"""Distributed tables whose distribution column (a customer's id) is not named customer_id: the customer itself,
and a referral, kept with its referrer."""

NOT_YET = {
    "customer": "external_id is unique, and every route names a customer by it: under Citus a unique index must "
    "hold the distribution column, and a lookup by external_id runs on every shard. To distribute: a table "
    "customer_external_id (external_id primary key, customer_id) distributed by external_id, read first by "
    "every route (a single-shard lookup), the unique index on customer.external_id dropped",
}
"""Distributed tables not ready yet, each with why and what it takes."""

README = Path(__file__).resolve().parents[1] / "README.md"


def _customer_keyed(table: Table) -> bool:
    return "customer_id" in table.columns or table.name in DISTRIBUTION_COLUMN


def _column(table: Table) -> str:
    """The table's distribution column: a customer's id."""
    return DISTRIBUTION_COLUMN.get(table.name, "customer_id")


def _distributed(table: Table) -> bool:
    return _customer_keyed(table) and table.name not in LOCAL


def _problems(table: Table) -> list[str]:
    column_name, problems = _column(table), []
    if column_name not in table.primary_key.columns:
        problems.append(f"primary key without {column_name}")
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint) and column_name not in constraint.columns:
            problems.append(f"unique constraint {constraint.name} without {column_name}")
    for column in table.columns:
        if column.unique and column.name != column_name:
            problems.append(f"unique column {column.name} without {column_name}")
    for index in table.indexes:
        if isinstance(index, Index) and index.unique and column_name not in index.columns:
            problems.append(f"unique index {index.name} without {column_name}")
    for key in table.foreign_key_constraints:
        referred = key.referred_table
        pairs = {(element.parent.name, element.column.name) for element in key.elements}
        if _distributed(referred) and (column_name, _column(referred)) not in pairs:
            problems.append(f"foreign key {key.name} to {referred.name} without {column_name} = {_column(referred)}")
    return problems


def _not_ready() -> dict[str, list[str]]:
    tables = [t for t in metadata.sorted_tables if _distributed(t)]
    return {t.name: p for t in tables if (p := _problems(t))}


def test_customer_keyed_tables_carry_customer_id_in_keys_and_unique_indexes():
    not_ready = _not_ready()
    unexpected = {name: problems for name, problems in not_ready.items() if name not in NOT_YET}
    assert unexpected == {}, "customer-keyed tables not ready for distribution by customer_id"


def test_not_yet_only_lists_tables_still_not_ready():
    ready_now = sorted(name for name in NOT_YET if name not in _not_ready())
    assert ready_now == [], "these tables are ready now: remove them from NOT_YET"


def test_local_tables_are_customer_keyed_and_joined_to_no_distributed_table():
    tables = metadata.tables
    assert sorted(name for name in LOCAL if name not in tables or not _customer_keyed(tables[name])) == []
    joins = [
        f"{table.name}.{key.name} -> {key.referred_table.name}"
        for table in metadata.sorted_tables
        for key in table.foreign_key_constraints
        if (table.name in LOCAL and _distributed(key.referred_table))
        or (_distributed(table) and key.referred_table.name in LOCAL)
    ]
    assert joins == [], "foreign keys between a local and a distributed table"


def _readme_item(title: str) -> set[str]:
    """The names in backticks of an item of the README's "Past one database" list."""
    item = rf"^- \*{re.escape(title)}\*(.*?)(?=^- \*)"
    found = re.search(item, README.read_text(), re.MULTILINE | re.DOTALL)
    assert found is not None, f"README: the item '{title}' of 'Past one database'"
    return set(re.findall(r"`([a-z_]+)`", found.group(1)))


def test_readme_names_the_distributed_and_the_local_tables():
    distributed = {t.name for t in metadata.sorted_tables if _distributed(t)}
    in_distributed, in_local = (
        _readme_item("Distributed, co-located with `customer`"),
        _readme_item("Local to the coordinator"),
    )
    assert sorted(distributed - in_distributed) == []
    assert sorted(set(LOCAL) - in_local) == []
    assert sorted(in_local & distributed) == [] and sorted(in_distributed & set(LOCAL)) == []


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
    # a key that names customer_id, but pairs it with another column of the parent (another customer's row)
    crossed = Table(
        "crossed",
        scratch,
        Column("customer_id", BigInteger, primary_key=True),
        Column("id", BigInteger, primary_key=True),
        Column("other_id", BigInteger),
        ForeignKeyConstraint(["other_id", "customer_id"], ["parent.customer_id", "parent.id"], name="fk_crossed"),
    )
    assert _problems(crossed) == ["foreign key fk_crossed to parent without customer_id = customer_id"]
