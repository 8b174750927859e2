"""The schema stays ready for Citus with customer_id as the distribution column (README, "Scaling"): every
customer-keyed table (one with a customer_id column) is distributed by it, and has customer_id in its primary key
and in every unique constraint and unique index, and every foreign key between two customer-keyed tables carries
customer_id.

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

NOT_YET: dict[str, str] = {}
"""Customer-keyed, distributed tables not ready yet: none today."""

README = Path(__file__).resolve().parents[1] / "README.md"


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


def _distributed(table: Table) -> bool:
    return table.name == "customer" or (_customer_keyed(table) and table.name not in LOCAL)


def _not_ready() -> dict[str, list[str]]:
    tables = [t for t in metadata.sorted_tables if _customer_keyed(t) and t.name not in LOCAL]
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


def test_readme_names_the_local_tables():
    text = README.read_text()
    section = re.search(r"^- \*Local to the coordinator\*:(.*?)(?=^- \*)", text, re.MULTILINE | re.DOTALL)
    assert section is not None, "README: the 'Local to the coordinator' item of 'Past one database'"
    named = set(re.findall(r"`([a-z_]+)`", section.group(1)))
    assert sorted(set(LOCAL) - named) == []
    distributed = [name for name in named if name in metadata.tables and _distributed(metadata.tables[name])]
    assert distributed == [], "README names distributed tables as local"


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
