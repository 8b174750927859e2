"""The attribute catalog: built-ins match the customer_features view, custom attributes join them."""

from types import SimpleNamespace

import pytest
from sqlalchemy import text

from app.rules.attributes import (
    BUILTIN_ATTRIBUTES,
    AttributeCatalog,
    AttributeSource,
    AttributeType,
    customer_features,
    is_builtin_attribute,
    list_attributes,
    register_builtin_attribute,
)

VIEW_TYPES = {
    AttributeType.number: {"numeric"},
    AttributeType.integer: {"smallint", "integer", "bigint"},
    AttributeType.string: {"text", "character varying"},
    AttributeType.boolean: {"boolean"},
    AttributeType.date: {"date"},
    AttributeType.string_set: {"ARRAY"},
}


def definition(name, type_, unit=None, description=""):
    return SimpleNamespace(name=name, type=type_, unit=unit, description=description)


async def test_every_builtin_reads_a_view_column_of_its_type(session):
    rows = await session.execute(
        text("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'customer_features'")
    )
    view = dict(rows.all())
    for attribute in BUILTIN_ATTRIBUTES.values():
        assert attribute.column in view, attribute.name
        assert view[attribute.column] in VIEW_TYPES[attribute.type], attribute.name
    assert set(customer_features.c.keys()) <= set(view)


def test_builtins_named_in_the_design_are_there():
    expected = {
        "segment": "string",
        "risk_level": "integer",
        "risk_tolerance": "integer",
        "marketing_consent": "boolean",
        "age": "integer",
        "tenure_months": "integer",
        "aum": "number",
        "aum_avg_3m": "number",
        "aum_trend_3m": "number",
        "deposit_balance": "number",
        "investment_balance": "number",
        "loan_balance": "number",
        "products_held_count": "integer",
        "held_products": "string_set",
        "held_categories": "string_set",
        "txn_count_90d": "integer",
        "txn_amount_90d": "number",
        "days_since_last_txn": "integer",
        "logins_30d": "integer",
        "referrals_12m": "integer",
        "nps_latest": "integer",
        "is_promoter": "boolean",
        "is_detractor": "boolean",
        "csat_avg": "number",
        "open_complaints": "integer",
        "days_to_resolve_avg": "number",
        "birthday_month": "boolean",
        "communities_joined": "integer",
        "community_active_30d": "boolean",
        "activities_attended_12m": "integer",
        "referrals_converted_12m": "integer",
        "advocacy_score": "integer",
        "contribution_monthly": "number",
        "churn_risk": "number",
    }
    assert {name: a.type.value for name, a in BUILTIN_ATTRIBUTES.items()} == expected
    assert all(a.description for a in BUILTIN_ATTRIBUTES.values())
    assert BUILTIN_ATTRIBUTES["aum"].unit == "currency"


def test_catalog_joins_custom_attributes_and_builtins_win_a_name_clash():
    catalog = AttributeCatalog(
        [definition("nps", "integer", "points", "Latest NPS answer"), definition("aum", "string")]
    )
    assert catalog["nps"].source is AttributeSource.custom and catalog["nps"].type is AttributeType.integer
    assert catalog["aum"].source is AttributeSource.builtin and catalog["aum"].type is AttributeType.number
    assert catalog.get("nope") is None and "nps" in catalog and "nope" not in catalog
    assert len(catalog) == len(BUILTIN_ATTRIBUTES) + 1
    assert "aum_avg_3m" in catalog.suggest("aum_avg3m")
    assert is_builtin_attribute("aum") and not is_builtin_attribute("nps")


def test_listing_for_the_api_has_builtins_first_then_custom():
    listed = list_attributes(AttributeCatalog([definition("zeta", "date"), definition("alpha", "string_set")]))
    names = [a.name for a in listed]
    assert names[: len(BUILTIN_ATTRIBUTES)] == list(BUILTIN_ATTRIBUTES)
    assert names[len(BUILTIN_ATTRIBUTES) :] == ["alpha", "zeta"]
    aum = listed[names.index("aum")].model_dump(mode="json")
    assert aum["type"] == "number" and aum["unit"] == "currency" and aum["source"] == "builtin"
    assert "gte" in aum["operators"] and "contains" not in aum["operators"]
    alpha = listed[names.index("alpha")].model_dump(mode="json")
    assert alpha["source"] == "custom" and alpha["operators"] == [
        "contains",
        "contains_any",
        "contains_none",
        "is_null",
    ]


def test_a_builtin_registers_once():
    with pytest.raises(ValueError):
        register_builtin_attribute("aum", AttributeType.number, "again")
