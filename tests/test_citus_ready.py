"""The schema stays ready for Citus with customer_id as the distribution column (README, "Scaling"): every
customer-keyed table (one with a customer_id column, or named in DISTRIBUTION_COLUMN with its column holding a
customer's id) is distributed by it, co-located with customer, and has that column in its primary key and in every
unique constraint and unique index, and every foreign key between two distributed tables pairs their distribution
columns within one co-location group.

DISTRIBUTED_BY_OTHER names the tables that hold a customer's id but are distributed by another column (each with
why): the key rules apply to them with that column, and no foreign key joins one with a table of another
co-location group (Citus has none), customer's included.

LOCAL names the customer-keyed tables that stay on the coordinator as local tables (each with why; the README's
"Local to the coordinator" names the same): the key rules do not apply to them, but no foreign key may join one
with a distributed table, either way (Citus has none between a local and a distributed table)."""

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

DISTRIBUTED_BY_OTHER = {
    "customer_external_id": (
        "external_id",
        "holds external ids unique (a unique index on customer must hold customer.id): the external id a route "
        "names is looked up on one shard, which gives the customer's id (customer_id), and the customer's shard",
    ),
}
"""Distributed tables holding a customer's id (customer_id) that are distributed by another column: their column,
and why. Each is its own co-location group."""

README = Path(__file__).resolve().parents[1] / "README.md"


def _customer_keyed(table: Table) -> bool:
    customer_id = "customer_id" in table.columns or table.name in DISTRIBUTION_COLUMN
    return customer_id and table.name not in DISTRIBUTED_BY_OTHER


def _column(table: Table) -> str:
    """The table's distribution column: a customer's id, but for the tables distributed by another column."""
    if table.name in DISTRIBUTED_BY_OTHER:
        return DISTRIBUTED_BY_OTHER[table.name][0]
    return DISTRIBUTION_COLUMN.get(table.name, "customer_id")


def _distributed(table: Table) -> bool:
    return (_customer_keyed(table) and table.name not in LOCAL) or table.name in DISTRIBUTED_BY_OTHER


def _group(table: Table) -> str:
    """The table's co-location group: customer's, or its own."""
    return table.name if table.name in DISTRIBUTED_BY_OTHER else "customer"


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
        if _distributed(referred) and _group(referred) != _group(table):
            problems.append(f"foreign key {key.name} to {referred.name} of another co-location group")
        elif _distributed(referred) and (column_name, _column(referred)) not in pairs:
            problems.append(f"foreign key {key.name} to {referred.name} without {column_name} = {_column(referred)}")
    return problems


def _not_ready() -> dict[str, list[str]]:
    tables = [t for t in metadata.sorted_tables if _distributed(t)]
    return {t.name: p for t in tables if (p := _problems(t))}


def test_distributed_tables_carry_their_distribution_column_in_keys_and_unique_indexes():
    assert _not_ready() == {}, "distributed tables not ready for Citus"


def test_tables_distributed_by_another_column_hold_a_customers_id():
    tables = metadata.tables
    assert sorted(name for name in DISTRIBUTED_BY_OTHER if "customer_id" not in tables[name].columns) == []
    assert sorted(set(DISTRIBUTED_BY_OTHER) & (set(LOCAL) | set(DISTRIBUTION_COLUMN))) == []


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
    colocated = {t.name for t in metadata.sorted_tables if _distributed(t) and _group(t) == "customer"}
    in_colocated, in_other, in_local = (
        _readme_item("Distributed, co-located with `customer`"),
        _readme_item("Distributed by another column"),
        _readme_item("Local to the coordinator"),
    )
    assert sorted(colocated - in_colocated) == []
    assert sorted(set(DISTRIBUTED_BY_OTHER) - in_other) == []
    assert sorted(set(LOCAL) - in_local) == []
    assert sorted(in_local & colocated) == []
    assert sorted(in_colocated & (set(LOCAL) | set(DISTRIBUTED_BY_OTHER))) == []


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


def test_a_table_distributed_by_another_column_is_held_to_it_and_joined_to_no_other_group(monkeypatch):
    from sqlalchemy import BigInteger, Column, ForeignKeyConstraint, MetaData, String

    scratch = MetaData()
    Table("customer", scratch, Column("id", BigInteger, primary_key=True))
    by_code = Table(
        "by_code",
        scratch,
        Column("code", String, primary_key=True),
        Column("customer_id", BigInteger, unique=True),
        ForeignKeyConstraint(["customer_id"], ["customer.id"], name="fk_by_code_customer"),
    )
    monkeypatch.setitem(DISTRIBUTED_BY_OTHER, "by_code", ("code", "a scratch table"))
    problems = _problems(by_code)
    assert "unique column customer_id without code" in problems
    assert "foreign key fk_by_code_customer to customer of another co-location group" in problems
