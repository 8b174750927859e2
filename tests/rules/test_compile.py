"""Compiling conditions to SQL: every operator on every attribute type, run against real customer rows."""

import json
from datetime import UTC, date, datetime, time, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select, text
from sqlalchemy.dialects import postgresql

from app.core.errors import InvalidInput
from app.rules.attributes import AttributeCatalog, customer_features
from app.rules.compile import (
    attribute_expression,
    check_condition,
    compile_condition,
    compile_explanation,
    explain_row,
    what_if_features,
)
from app.rules.schema import parse_condition
from tests.factories import inserting_customers

CUSTOM = [
    ("score", "number"),
    ("visits", "integer"),
    ("branch", "string"),
    ("vip", "boolean"),
    ("since", "date"),
    ("club", "string_set"),
    ("o'hara", "string"),
]
CATALOG = AttributeCatalog([SimpleNamespace(name=n, type=t, unit=None, description=f"custom {n}") for n, t in CUSTOM])
INJECTION = "x' OR '1'='1"

# (condition, the customers it matches). A: wealthy, long-standing, active; B: small business, little money, an
# expired risk assessment, wrongly typed custom values; C: no holdings, no risk level. E is erased: never matches.
CASES: list[tuple[dict, str]] = [
    # string
    ({"attr": "segment", "op": "eq", "value": "retail"}, "AC"),
    ({"attr": "segment", "op": "ne", "value": "retail"}, "B"),
    ({"attr": "segment", "op": "in", "value": ["small_business", "corporate"]}, "B"),
    ({"attr": "segment", "op": "not_in", "value": ["retail"]}, "B"),
    ({"attr": "segment", "op": "is_null", "value": True}, ""),
    ({"attr": "segment", "op": "is_null", "value": False}, "ABC"),
    ({"attr": "segment", "op": "eq", "value": INJECTION}, ""),
    ({"attr": "segment", "op": "in", "value": ["retail') OR true --", INJECTION]}, ""),
    # integer
    ({"attr": "risk_level", "op": "eq", "value": 4}, "A"),
    ({"attr": "risk_level", "op": "ne", "value": 4}, "B"),
    ({"attr": "risk_level", "op": "lt", "value": 3}, "B"),
    ({"attr": "risk_level", "op": "lte", "value": 4}, "AB"),
    ({"attr": "risk_level", "op": "gt", "value": 2}, "A"),
    ({"attr": "risk_level", "op": "gte", "value": 2}, "AB"),
    ({"attr": "risk_level", "op": "in", "value": [1, 2]}, "B"),
    ({"attr": "risk_level", "op": "not_in", "value": [2]}, "A"),
    ({"attr": "risk_level", "op": "between", "value": [2, 3]}, "B"),
    ({"attr": "risk_level", "op": "is_null", "value": True}, "C"),
    ({"attr": "risk_level", "op": "is_null", "value": False}, "AB"),
    ({"attr": "risk_tolerance", "op": "eq", "value": 4}, "A"),
    ({"attr": "risk_tolerance", "op": "is_null", "value": True}, "BC"),
    ({"attr": "age", "op": "between", "value": [39, 41]}, "A"),
    ({"attr": "age", "op": "lt", "value": 30}, "C"),
    ({"attr": "age", "op": "is_null", "value": True}, "B"),
    ({"attr": "tenure_months", "op": "gte", "value": 12}, "AC"),
    ({"attr": "tenure_months", "op": "gte", "value": 12.0}, "AC"),
    ({"attr": "tenure_months", "op": "lt", "value": 12}, "B"),
    ({"attr": "tenure_months", "op": "eq", "value": 60}, "A"),
    ({"attr": "tenure_months", "op": "between", "value": [1, 3]}, "B"),
    ({"attr": "days_since_last_txn", "op": "lte", "value": 7}, "A"),
    ({"attr": "days_since_last_txn", "op": "gt", "value": 30}, "C"),
    ({"attr": "days_since_last_txn", "op": "is_null", "value": True}, "B"),
    ({"attr": "products_held_count", "op": "gte", "value": 2}, "A"),
    ({"attr": "products_held_count", "op": "in", "value": [0, 1]}, "BC"),
    ({"attr": "txn_count_90d", "op": "eq", "value": 10}, "A"),
    ({"attr": "txn_count_90d", "op": "eq", "value": 0}, "BC"),
    ({"attr": "logins_30d", "op": "gte", "value": 7}, "A"),
    ({"attr": "logins_30d", "op": "eq", "value": 0}, "BC"),
    ({"attr": "referrals_12m", "op": "eq", "value": 3}, "A"),
    # number
    ({"attr": "aum", "op": "eq", "value": 700000}, "A"),
    ({"attr": "aum", "op": "ne", "value": 0}, "AB"),
    ({"attr": "aum", "op": "lt", "value": 1000}, "C"),
    ({"attr": "aum", "op": "lte", "value": 1000.0}, "BC"),
    ({"attr": "aum", "op": "gt", "value": 999.99}, "AB"),
    ({"attr": "aum", "op": "gte", "value": 1000}, "AB"),
    ({"attr": "aum", "op": "in", "value": [0, 1000]}, "BC"),
    ({"attr": "aum", "op": "not_in", "value": [0]}, "AB"),
    ({"attr": "aum", "op": "between", "value": [500, 700000]}, "AB"),
    ({"attr": "aum", "op": "is_null", "value": False}, "ABC"),
    ({"attr": "aum_avg_3m", "op": "between", "value": [560000, 575000]}, "A"),
    ({"attr": "aum_avg_3m", "op": "eq", "value": 1000}, "B"),
    ({"attr": "aum_trend_3m", "op": "between", "value": [0.2, 0.3]}, "A"),
    ({"attr": "aum_trend_3m", "op": "eq", "value": 0}, "B"),
    ({"attr": "aum_trend_3m", "op": "is_null", "value": True}, "C"),
    ({"attr": "deposit_balance", "op": "eq", "value": 300000}, "A"),
    ({"attr": "investment_balance", "op": "gt", "value": 0}, "A"),
    ({"attr": "loan_balance", "op": "eq", "value": 200000}, "A"),
    ({"attr": "txn_amount_90d", "op": "eq", "value": 2500.5}, "A"),
    # boolean
    ({"attr": "marketing_consent", "op": "eq", "value": True}, "AC"),
    ({"attr": "marketing_consent", "op": "eq", "value": False}, "B"),
    ({"attr": "marketing_consent", "op": "ne", "value": True}, "B"),
    ({"attr": "marketing_consent", "op": "is_null", "value": False}, "ABC"),
    # string_set
    ({"attr": "held_products", "op": "contains", "value": "mortgage"}, "A"),
    ({"attr": "held_products", "op": "contains_any", "value": ["current_account", "mortgage"]}, "AB"),
    ({"attr": "held_products", "op": "contains_none", "value": ["mortgage"]}, "BC"),
    ({"attr": "held_products", "op": "is_null", "value": True}, ""),
    ({"attr": "held_products", "op": "contains", "value": INJECTION}, ""),
    ({"attr": "held_categories", "op": "contains", "value": "deposit"}, "AB"),
    ({"attr": "held_categories", "op": "contains_any", "value": ["wealth", "fund"]}, "A"),
    ({"attr": "held_categories", "op": "contains_none", "value": ["loan", "card"]}, "BC"),
    # custom: number, integer, string, boolean, date, string_set (B's score and club are of the wrong JSON type)
    ({"attr": "score", "op": "gte", "value": 7}, "A"),
    ({"attr": "score", "op": "eq", "value": 7.5}, "A"),
    ({"attr": "score", "op": "lt", "value": 7}, ""),
    ({"attr": "score", "op": "in", "value": [7.5, 1]}, "A"),
    ({"attr": "score", "op": "between", "value": [7.5, 7.5]}, "A"),
    ({"attr": "score", "op": "is_null", "value": True}, "BC"),
    ({"attr": "visits", "op": "gt", "value": 5}, "A"),
    ({"attr": "visits", "op": "lte", "value": 3}, "C"),
    ({"attr": "visits", "op": "not_in", "value": [12]}, "C"),
    ({"attr": "visits", "op": "is_null", "value": True}, "B"),
    ({"attr": "branch", "op": "eq", "value": "north"}, "A"),
    ({"attr": "branch", "op": "ne", "value": "north"}, "B"),
    ({"attr": "branch", "op": "in", "value": ["south", "east"]}, "B"),
    ({"attr": "branch", "op": "not_in", "value": ["south"]}, "A"),
    ({"attr": "branch", "op": "is_null", "value": True}, "C"),
    ({"attr": "branch", "op": "eq", "value": "north' OR 'a'='a"}, ""),
    ({"attr": "o'hara", "op": "eq", "value": "yes"}, "C"),
    ({"attr": "vip", "op": "eq", "value": True}, "A"),
    ({"attr": "vip", "op": "eq", "value": False}, "B"),
    ({"attr": "vip", "op": "ne", "value": True}, "B"),
    ({"attr": "vip", "op": "is_null", "value": True}, "C"),
    ({"attr": "since", "op": "lt", "value": "2020-01-01"}, "A"),
    ({"attr": "since", "op": "gte", "value": "2020-01-01"}, "C"),
    ({"attr": "since", "op": "eq", "value": "2023-12-31"}, "C"),
    ({"attr": "since", "op": "ne", "value": "2023-12-31"}, "A"),
    ({"attr": "since", "op": "in", "value": ["2019-05-01"]}, "A"),
    ({"attr": "since", "op": "between", "value": ["2019-01-01", "2019-12-31"]}, "A"),
    ({"attr": "since", "op": "is_null", "value": True}, "B"),
    ({"attr": "club", "op": "contains", "value": "gold"}, "A"),
    ({"attr": "club", "op": "contains_any", "value": ["travel", "x"]}, "A"),
    ({"attr": "club", "op": "contains_none", "value": ["gold"]}, "C"),
    ({"attr": "club", "op": "is_null", "value": True}, "B"),
    # combinators and NULL semantics: unknown is never a match, and `not` of unknown is unknown
    ({"always": True}, "ABC"),
    ({"not": {"always": True}}, ""),
    ({"all": [{"attr": "segment", "op": "eq", "value": "retail"}, {"attr": "aum", "op": "gt", "value": 0}]}, "A"),
    ({"any": [{"attr": "risk_level", "op": "eq", "value": 2}, {"attr": "aum", "op": "eq", "value": 0}]}, "BC"),
    ({"not": {"attr": "risk_level", "op": "eq", "value": 4}}, "B"),
    ({"not": {"not": {"attr": "risk_level", "op": "eq", "value": 4}}}, "A"),
    ({"not": {"attr": "risk_level", "op": "in", "value": [2]}}, "A"),
    ({"not": {"attr": "risk_level", "op": "is_null", "value": True}}, "AB"),
    ({"not": {"attr": "segment", "op": "is_null", "value": False}}, ""),
    ({"not": {"attr": "aum", "op": "between", "value": [500, 700000]}}, "C"),
    ({"not": {"attr": "since", "op": "lt", "value": "2020-01-01"}}, "C"),
    ({"not": {"attr": "held_products", "op": "contains", "value": "mortgage"}}, "BC"),
    ({"not": {"attr": "held_categories", "op": "contains_none", "value": ["loan"]}}, "A"),
    ({"not": {"attr": "club", "op": "contains", "value": "gold"}}, "C"),
    ({"not": {"attr": "club", "op": "contains_none", "value": ["gold"]}}, "A"),
    ({"not": {"any": [{"attr": "vip", "op": "eq", "value": True}, {"attr": "branch", "op": "eq", "value": "x"}]}}, "B"),
    (
        {
            "any": [
                {"attr": "risk_level", "op": "is_null", "value": True},
                {"attr": "risk_level", "op": "ne", "value": 4},
            ]
        },
        "BC",
    ),
    (
        {
            "any": [
                {"attr": "score", "op": "gt", "value": 100},
                {"attr": "segment", "op": "eq", "value": "small_business"},
            ]
        },
        "B",
    ),
    (
        {
            "not": {
                "all": [
                    {"attr": "score", "op": "gt", "value": 1},
                    {"attr": "segment", "op": "eq", "value": "small_business"},
                ]
            }
        },
        "AC",
    ),
    (
        {
            "all": [
                {"attr": "aum", "op": "gte", "value": 500000},
                {
                    "any": [
                        {"attr": "tenure_months", "op": "gte", "value": 36},
                        {"attr": "held_categories", "op": "contains", "value": "wealth"},
                    ]
                },
                {"not": {"attr": "risk_level", "op": "lt", "value": 2}},
            ]
        },
        "A",
    ),
]


def _years_ago(years: int, days: int) -> date:
    day = datetime.now(UTC).date() - timedelta(days=days)
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February
        return day.replace(year=day.year - years, day=28)


def _noon(day: date) -> datetime:
    return datetime.combine(day, time(12), tzinfo=UTC)


@pytest.fixture
async def population(session) -> None:
    """Customers A, B, C (and E, erased) with holdings, AUM history and activity, inserted directly."""
    now = datetime.now(UTC)
    today = now.date()
    await session.execute(
        text(
            "INSERT INTO product (code, name, category, risk_level, channels) VALUES "
            "('savings_account', 'Savings', 'deposit', 1, '{mobile}'), "
            "('current_account', 'Current', 'deposit', 1, '{mobile}'), "
            "('private_portfolio', 'Portfolio', 'wealth', 4, '{mobile}'), "
            "('mortgage', 'Mortgage', 'loan', 2, '{mobile}')"
        )
    )
    customers = [
        (
            "A",
            "retail",
            _years_ago(40, 10),
            _noon(_years_ago(5, 15)),
            4,
            now,
            True,
            {
                "score": 7.5,
                "visits": 12,
                "branch": "north",
                "vip": True,
                "since": "2019-05-01",
                "club": ["gold", "travel"],
            },
            now - timedelta(days=3),
            None,
        ),
        (
            "B",
            "small_business",
            None,
            now - timedelta(days=70),
            2,
            now - timedelta(days=730),
            False,
            {"score": "high", "branch": "south", "vip": False, "club": "gold"},
            None,
            None,
        ),
        (
            "C",
            "retail",
            _years_ago(25, 10),
            _noon(_years_ago(1, 15)),
            None,
            None,
            True,
            {"visits": 3, "since": "2023-12-31", "club": [], "o'hara": "yes"},
            now - timedelta(days=40),
            None,
        ),
        ("E", "retail", _years_ago(50, 10), _noon(_years_ago(9, 15)), 5, now, True, {}, now, now),
    ]
    ids = {}
    for external_id, segment, birth, onboarded, risk, assessed, consent, attributes, last_txn, erased in customers:
        ids[external_id] = await session.scalar(
            text(
                inserting_customers(
                    "INSERT INTO customer (external_id, segment, birth_date, onboarded_at, risk_level, "
                    "risk_assessed_at, marketing_consent, attributes, last_txn_at, erased_at) VALUES (:external_id, "
                    ":segment, :birth, :onboarded, :risk, :assessed, :consent, CAST(:attributes AS jsonb), :last_txn, "
                    ":erased)"
                )
            ),
            {
                "external_id": external_id,
                "segment": segment,
                "birth": birth,
                "onboarded": onboarded,
                "risk": risk,
                "assessed": assessed,
                "consent": consent,
                "attributes": json.dumps(attributes),
                "last_txn": last_txn,
                "erased": erased,
            },
        )
    a, b, e = ids["A"], ids["B"], ids["E"]
    await session.execute(
        text(
            "INSERT INTO holding (customer_id, product_code, balance, as_of) VALUES "
            "(:a, 'savings_account', 300000, :today), (:a, 'private_portfolio', 400000, :today), "
            "(:a, 'mortgage', 200000, :today), (:b, 'current_account', 1000, :today), "
            "(:e, 'private_portfolio', 9000000, :today)"
        ),
        {"a": a, "b": b, "e": e, "today": today},
    )
    await session.execute(
        text("INSERT INTO customer_aum_daily (customer_id, day, aum) VALUES (:a, :d200, 500000), (:a, :d30, 700000)"),
        {"a": a, "d200": today - timedelta(days=200), "d30": today - timedelta(days=30)},
    )
    await session.execute(
        text(
            "INSERT INTO customer_activity_daily (customer_id, day, txn_count, txn_amount, logins, referrals) VALUES "
            "(:a, :d5, 10, 2500.50, 7, 1), (:a, :d100, 4, 100, 0, 2), (:c, :d40, 0, 0, 3, 0)"
        ),
        {
            "a": a,
            "c": ids["C"],
            "d5": today - timedelta(days=5),
            "d100": today - timedelta(days=100),
            "d40": today - timedelta(days=40),
        },
    )


async def truth_table(session, features, cases=CASES, *, catalog=CATALOG) -> dict[str, str]:
    """{condition as JSON: the ids of the customers it matches}, from one statement over `features`."""
    columns = [
        compile_condition(parse_condition(raw), catalog, features).label(f"c{i}") for i, (raw, _) in enumerate(cases)
    ]
    rows = (await session.execute(select(features.c.external_id, *columns).order_by(features.c.external_id))).all()
    for row in rows:
        assert all(isinstance(value, bool) for value in row[1:]), "a compiled condition returned NULL"
    return {
        json.dumps(raw): "".join(row.external_id or "?" for row in rows if row[i + 1])
        for i, (raw, _) in enumerate(cases)
    }


async def test_every_operator_on_every_type_matches_the_expected_customers(session, population):
    assert await truth_table(session, customer_features) == {json.dumps(raw): ids for raw, ids in CASES}


async def test_values_are_bound_parameters_never_sql_text():
    condition = parse_condition(
        {
            "any": [
                {"attr": "segment", "op": "eq", "value": INJECTION},
                {"attr": "o'hara", "op": "in", "value": ["a'); DROP TABLE customer; --"]},
            ]
        }
    )
    compiled = (
        select(customer_features.c.customer_id)
        .where(compile_condition(condition, CATALOG))
        .compile(dialect=postgresql.dialect())
    )
    sql = str(compiled)
    assert "'1'='1" not in sql and "DROP TABLE" not in sql and "o'hara" not in sql
    assert INJECTION in compiled.params.values() and "o'hara" in compiled.params.values()


async def test_attribute_names_from_a_document_never_reach_sql():
    with pytest.raises(InvalidInput) as caught:
        check_condition(parse_condition({"attr": "aum; DROP TABLE customer", "op": "gte", "value": 1}), CATALOG)
    assert caught.value.errors[0]["pointer"] == "/attr"


@pytest.mark.parametrize(
    ("raw", "pointer", "words"),
    [
        ({"attr": "aum_avg3m", "op": "gte", "value": 1}, "/c/attr", "did you mean 'aum_avg_3m'"),
        ({"attr": "aum", "op": "gte", "value": "500000"}, "/c/value", "expected a number"),
        ({"attr": "aum", "op": "gte", "value": True}, "/c/value", "expected a number"),
        ({"attr": "segment", "op": "eq", "value": 5}, "/c/value", "expected a string"),
        ({"attr": "segment", "op": "in", "value": ["retail", 3]}, "/c/value/1", "expected a string"),
        ({"attr": "tenure_months", "op": "gte", "value": 12.5}, "/c/value", "whole number"),
        ({"attr": "marketing_consent", "op": "eq", "value": "true"}, "/c/value", "true or false"),
        ({"attr": "since", "op": "lt", "value": "01/02/2020"}, "/c/value", "ISO date"),
        ({"attr": "since", "op": "lt", "value": "2020-02-30"}, "/c/value", "not a valid date"),
        ({"attr": "since", "op": "between", "value": ["2020-01-01", 5]}, "/c/value/1", "ISO date"),
        ({"attr": "age", "op": "between", "value": [40, 20]}, "/c/value", "low <= high"),
        ({"attr": "held_categories", "op": "contains", "value": 1}, "/c/value", "expected a string"),
        ({"attr": "held_categories", "op": "contains_any", "value": ["wealth", 1]}, "/c/value/1", "expected a string"),
        ({"attr": "aum", "op": "contains", "value": 5}, "/c/op", "does not apply to 'aum'"),
        ({"attr": "held_products", "op": "eq", "value": "x"}, "/c/op", "does not apply"),
        ({"attr": "segment", "op": "lt", "value": "m"}, "/c/op", "does not apply"),
        ({"attr": "vip", "op": "in", "value": [True]}, "/c/op", "does not apply"),
        (
            {"all": [{"attr": "aum", "op": "gte", "value": 1}, {"not": {"attr": "segment", "op": "eq", "value": 1}}]},
            "/c/all/1/not/value",
            "expected a string",
        ),
    ],
)
def test_type_mismatches_point_at_the_offending_member(raw, pointer, words):
    condition = parse_condition(raw, "/c")
    with pytest.raises(InvalidInput) as caught:
        check_condition(condition, CATALOG, "/c")
    assert caught.value.errors[0]["pointer"] == pointer
    assert words in caught.value.errors[0]["detail"]
    with pytest.raises(InvalidInput):
        compile_condition(condition, CATALOG, pointer="/c")


async def test_what_if_agrees_with_real_rows_of_equal_values(session, population):
    attributes = list(CATALOG)
    stmt = select(
        customer_features.c.external_id, *(attribute_expression(a, customer_features).label(a.name) for a in attributes)
    )
    for row in (await session.execute(stmt.order_by(customer_features.c.external_id))).mappings():
        values = {a.name: row[a.name] for a in attributes}
        what_if = what_if_features(CATALOG, values)
        real = select(customer_features).where(customer_features.c.external_id == row["external_id"]).subquery()
        on_real = await truth_table(session, real)
        on_what_if = await truth_table(session, what_if)
        assert {k: bool(v) for k, v in on_what_if.items()} == {k: bool(v) for k, v in on_real.items()}, row[
            "external_id"
        ]


async def test_what_if_takes_json_values_and_defaults_like_the_view(session):
    features = what_if_features(
        CATALOG,
        {
            "aum": 600000.5,
            "held_categories": ["wealth"],
            "since": "2019-05-01",
            "club": ["gold"],
            "visits": 4,
            "risk_level": None,
        },
    )
    row = (await session.execute(select(features))).mappings().one()
    assert str(row["aum"]) == "600000.5" and row["deposit_balance"] == 0 and row["held_products"] == []
    assert row["segment"] is None and row["risk_level"] is None
    assert row["attributes"] == {"since": "2019-05-01", "club": ["gold"], "visits": 4}
    condition = parse_condition(
        {
            "all": [
                {"attr": "aum", "op": "gt", "value": 600000},
                {"attr": "held_categories", "op": "contains", "value": "wealth"},
                {"attr": "club", "op": "contains", "value": "gold"},
                {"attr": "since", "op": "lt", "value": "2020-01-01"},
                {"attr": "visits", "op": "eq", "value": 4},
                {"attr": "products_held_count", "op": "eq", "value": 0},
            ]
        }
    )
    assert await session.scalar(select(compile_condition(condition, CATALOG, features))) is True


@pytest.mark.parametrize(
    ("values", "pointer"),
    [
        ({"nope": 1}, "/values/nope"),
        ({"aum": "lots"}, "/values/aum"),
        ({"held_products": "mortgage"}, "/values/held_products"),
        ({"club": ["gold", 7]}, "/values/club/1"),
        ({"since": "yesterday"}, "/values/since"),
    ],
)
def test_what_if_rejects_unknown_attributes_and_wrong_types(values, pointer):
    with pytest.raises(InvalidInput) as caught:
        what_if_features(CATALOG, values, pointer="/values")
    assert caught.value.errors[0]["pointer"] == pointer


async def test_explanation_lists_each_leaf_with_value_and_result_in_the_same_round_trip(session, population):
    prefix = "/tiers/0/condition"
    condition = parse_condition(
        {
            "all": [
                {"attr": "aum", "op": "gte", "value": 500000},
                {
                    "any": [
                        {"attr": "risk_level", "op": "lt", "value": 2},
                        {"attr": "held_categories", "op": "contains", "value": "wealth"},
                    ]
                },
                {"not": {"attr": "score", "op": "between", "value": [8, 10]}},
                {"attr": "since", "op": "is_null", "value": False},
            ]
        },
        prefix,
    )
    matched = compile_condition(condition, CATALOG, pointer=prefix).label("matched")
    leaves = compile_explanation(condition, CATALOG, pointer=prefix, label_prefix="t0")
    stmt = select(customer_features.c.external_id, matched, *(c for leaf in leaves for c in leaf.columns))
    rows = {row.external_id: row._mapping for row in (await session.execute(stmt))}

    assert rows["A"]["matched"] is True
    assert explain_row(leaves, rows["A"]) == [
        {
            "pointer": f"{prefix}/all/0",
            "attribute": "aum",
            "operator": "gte",
            "threshold": 500000,
            "value": "700000.00",
            "result": True,
        },
        {
            "pointer": f"{prefix}/all/1/any/0",
            "attribute": "risk_level",
            "operator": "lt",
            "threshold": 2,
            "value": 4,
            "result": False,
        },
        {
            "pointer": f"{prefix}/all/1/any/1",
            "attribute": "held_categories",
            "operator": "contains",
            "threshold": "wealth",
            "value": ["deposit", "loan", "wealth"],
            "result": True,
        },
        {
            "pointer": f"{prefix}/all/2/not",
            "attribute": "score",
            "operator": "between",
            "threshold": [8, 10],
            "value": "7.5",
            "result": False,
        },
        {
            "pointer": f"{prefix}/all/3",
            "attribute": "since",
            "operator": "is_null",
            "threshold": False,
            "value": "2019-05-01",
            "result": True,
        },
    ]
    explained_c = explain_row(leaves, rows["C"])
    assert rows["C"]["matched"] is False
    assert [(e["value"], e["result"]) for e in explained_c] == [
        ("0", False),
        (None, None),
        ([], False),
        (None, None),
        ("2023-12-31", True),
    ]
    json.dumps(explained_c)  # serialisable as it is
