"""The customer_features SQL has one source (app/rules/features_sql.py): the versions migrations shipped stay as
they were, the database at head has the current one, and every column is a built-in attribute or a customer field,
each with the writes that move it."""

import hashlib

from sqlalchemy import text

from app.customers.service import ACTIVITY_METRICS, HOLDING_METRICS
from app.rules import features_sql
from app.rules.attributes import BUILTIN_ATTRIBUTES
from app.rules.features_sql import (
    BY_IDS,
    BY_RANGE,
    CURRENT,
    FEATURES_V1,
    FEATURES_V2,
    FEATURES_V3,
    FEATURES_V4,
    FEATURES_V5,
)

SHIPPED = {
    "FEATURES_V1": (FEATURES_V1, "c94bdd1ae9e1dc57"),
    "FEATURES_V2": (FEATURES_V2, "2af83f8248c759fb"),
    "FEATURES_V3": (FEATURES_V3, "b3a57b28c4010f8f"),
    "FEATURES_V4": (FEATURES_V4, "c1f62c8c362ee4bb"),
    "FEATURES_V5": (FEATURES_V5, "61c014a8893ae1b1"),
}
"""Each version a migration has created, with the digest of its SQL: a shipped version never changes."""
CUSTOMER_FIELDS = {"customer_id", "external_id", "attributes", "birth_date", "onboarded_at"}


def _digest(version) -> str:
    return hashlib.sha256("\n".join(version.statements()).encode()).hexdigest()[:16]


def test_shipped_versions_are_frozen():
    versions = {name: value for name, value in vars(features_sql).items() if name.startswith("FEATURES_V")}
    assert set(versions) == set(SHIPPED), "a new version: record its digest here once its migration ships"
    assert {name: _digest(version) for name, (version, _) in SHIPPED.items()} == {
        name: digest for name, (_, digest) in SHIPPED.items()
    }


async def test_the_database_at_head_has_the_current_version(session):
    columns = (
        (
            await session.execute(
                text(
                    "SELECT column_name FROM information_schema.columns WHERE table_name = 'customer_features' "
                    "ORDER BY ordinal_position"
                )
            )
        )
        .scalars()
        .all()
    )
    assert tuple(columns) == CURRENT.names
    bodies = dict(
        (
            await session.execute(
                text(
                    "SELECT proname, prosrc FROM pg_proc "
                    "WHERE proname IN ('customer_features_for', 'customer_features_between')"
                )
            )
        ).all()
    )
    assert bodies == {
        "customer_features_for": CURRENT.select(BY_IDS),
        "customer_features_between": CURRENT.select(BY_RANGE),
    }


def test_every_column_is_a_builtin_attribute_or_a_customer_field():
    assert set(CURRENT.names) == CUSTOMER_FIELDS | {a.column for a in BUILTIN_ATTRIBUTES.values()}
    assert list(BUILTIN_ATTRIBUTES) == [name for name in CURRENT.names if name not in CUSTOMER_FIELDS]


def test_the_writes_that_move_a_column_are_declared_with_it():
    assert HOLDING_METRICS == {
        "aum",
        "aum_avg_3m",
        "aum_trend_3m",
        "deposit_balance",
        "investment_balance",
        "loan_balance",
        "products_held_count",
        "held_products",
        "held_categories",
    }
    assert ACTIVITY_METRICS == {"txn_count_90d", "txn_amount_90d", "days_since_last_txn", "logins_30d", "referrals_12m"}
    assert not HOLDING_METRICS & ACTIVITY_METRICS
