"""The attribute catalog: what a condition may test, its type, and the customer_features column it reads.

Built-in attributes are columns of the `customer_features` view, whose SQL app/rules/features_sql.py renders.
Custom attributes are declared by the bank (app/rules/custom_attributes.py); their values live in the view's
`attributes` JSONB column, and rules reference them like built-ins.

Adding a built-in attribute is one step, three edits that tests/rules hold to each other:
1. app/rules/features_sql.py: the next version, `FEATURES_V<n+1> = FEATURES_V<n>.then(columns=[Column(name, sql,
   moved_by)], sources=[...])` (moved_by: HOLDINGS or ACTIVITY when only such a write moves it), made CURRENT;
2. below, its `register_builtin_attribute(...)`, after the others (GET /v1/attributes lists them in this order);
3. a migration, migrations/versions/YYYY-MM-DD_slug.py, whose upgrade is `replace_features(op.execute,
   FEATURES_V<n+1>)` and downgrade `replace_features(op.execute, FEATURES_V<n>, fewer_columns=True)`.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from difflib import get_close_matches
from enum import StrEnum
from typing import Any, Protocol

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql import ColumnElement, FromClause
from sqlalchemy.sql.type_api import TypeEngine

from app.rules.custom_attributes import list_attribute_definitions
from app.rules.schema import Operator


class AttributeType(StrEnum):
    """The type of an attribute; it decides which operators and values a comparison on it accepts."""

    number = "number"  # Decimal: money, ratios
    integer = "integer"
    string = "string"
    boolean = "boolean"
    date = "date"  # ISO YYYY-MM-DD
    string_set = "string_set"  # a set of strings (product codes, categories)


class AttributeSource(StrEnum):
    builtin = "builtin"
    custom = "custom"


_ORDERED = (
    Operator.eq,
    Operator.ne,
    Operator.lt,
    Operator.lte,
    Operator.gt,
    Operator.gte,
    Operator.in_,
    Operator.not_in,
    Operator.between,
    Operator.is_null,
)
OPERATORS_BY_TYPE: dict[AttributeType, tuple[Operator, ...]] = {
    AttributeType.number: _ORDERED,
    AttributeType.integer: _ORDERED,
    AttributeType.date: _ORDERED,
    AttributeType.string: (Operator.eq, Operator.ne, Operator.in_, Operator.not_in, Operator.is_null),
    AttributeType.boolean: (Operator.eq, Operator.ne, Operator.is_null),
    AttributeType.string_set: (Operator.contains, Operator.contains_any, Operator.contains_none, Operator.is_null),
}
"""The operators each attribute type accepts."""

SQL_TYPES: dict[AttributeType, TypeEngine[Any]] = {
    AttributeType.number: sa.Numeric(),
    AttributeType.integer: sa.BigInteger(),
    AttributeType.string: sa.Text(),
    AttributeType.boolean: sa.Boolean(),
    AttributeType.date: sa.Date(),
    AttributeType.string_set: ARRAY(sa.Text()),
}
"""The SQL type of each attribute type's values (bound parameters, what-if columns)."""


@dataclass(frozen=True, slots=True)
class Attribute:
    """One attribute a condition may reference."""

    name: str
    type: AttributeType
    description: str
    unit: str | None = None
    source: AttributeSource = AttributeSource.builtin
    column: str | None = None
    """For a built-in: the column of the features relation it reads."""
    missing: Any = None
    """For a built-in: what the view yields when the customer has no source data (0 for sums, [] for sets);
    a what-if evaluation uses it for an attribute that is not supplied."""


class CustomAttributeDefinitionLike(Protocol):
    """What the catalog needs of a custom attribute definition (app.rules.models.CustomAttributeDefinition fits)."""

    name: str
    type: str
    unit: str | None
    description: str


# ---- the features relation and the built-ins -------------------------------------------------------------------

customer_features = sa.table(
    "customer_features",
    sa.column("customer_id", sa.BigInteger()),
    sa.column("external_id", sa.String()),
    sa.column("attributes", JSONB()),
    sa.column("birth_date", sa.Date()),
    sa.column("onboarded_at", sa.DateTime(timezone=True)),
)
"""The customer_features view as a lightweight table (not in Base.metadata, so Alembic never creates it).
Built-in attribute columns are appended by `register_builtin_attribute`."""

BUILTIN_ATTRIBUTES: dict[str, Attribute] = {}
"""Every built-in attribute by name, in registration order (the order GET /v1/attributes lists them)."""


def register_builtin_attribute(
    name: str,
    type_: AttributeType,
    description: str,
    *,
    unit: str | None = None,
    column: str | None = None,
    sql_type: TypeEngine[Any] | None = None,
    missing: Any = None,
) -> Attribute:
    """Declare a built-in attribute read from `column` (default: its name) of customer_features.

    The view must have that column (add it in a migration first). sql_type defaults to the attribute type's.
    """
    if name in BUILTIN_ATTRIBUTES:
        raise ValueError(f"built-in attribute {name!r} is already registered")
    column = column or name
    attribute = Attribute(
        name=name,
        type=type_,
        description=description,
        unit=unit,
        source=AttributeSource.builtin,
        column=column,
        missing=missing,
    )
    if column not in customer_features.c:
        customer_features.append_column(sa.column(column, sql_type if sql_type is not None else SQL_TYPES[type_]))
    BUILTIN_ATTRIBUTES[name] = attribute
    return attribute


_N, _I, _S, _B, _SET = (
    AttributeType.number,
    AttributeType.integer,
    AttributeType.string,
    AttributeType.boolean,
    AttributeType.string_set,
)
_MONEY = "currency"

register_builtin_attribute("segment", _S, "Customer segment: retail or small_business.", sql_type=sa.String())
register_builtin_attribute(
    "risk_level",
    _I,
    "Assessed investment risk level C1..C5 (1 = most conservative), current or expired; null when never assessed.",
    sql_type=sa.SmallInteger(),
)
register_builtin_attribute(
    "risk_tolerance",
    _I,
    "The risk level while its assessment is unexpired, else null. Product suitability "
    "compares a product's risk level with this.",
    sql_type=sa.SmallInteger(),
)
register_builtin_attribute("marketing_consent", _B, "Whether the customer consents to marketing.")
register_builtin_attribute(
    "age", _I, "Age in whole years; null when the birth date is unknown.", unit="years", sql_type=sa.Integer()
)
register_builtin_attribute("tenure_months", _I, "Whole months since onboarding.", unit="months", sql_type=sa.Integer())
register_builtin_attribute(
    "aum", _N, "Assets under management now: deposit, wealth, fund and insurance balances.", unit=_MONEY, missing=0
)
register_builtin_attribute(
    "aum_avg_3m",
    _N,
    "Daily-average AUM over the trailing 3 months (time-weighted over reported days).",
    unit=_MONEY,
    missing=0,
)
register_builtin_attribute(
    "aum_trend_3m",
    _N,
    "Relative change of today's AUM against its 3-month average: -0.25 is a 25% fall; null when the average is 0.",
    unit="ratio",
)
register_builtin_attribute("deposit_balance", _N, "Balance of deposit products.", unit=_MONEY, missing=0)
register_builtin_attribute("investment_balance", _N, "Balance of wealth and fund products.", unit=_MONEY, missing=0)
register_builtin_attribute("loan_balance", _N, "Outstanding balance of loans and cards.", unit=_MONEY, missing=0)
register_builtin_attribute(
    "products_held_count", _I, "Number of products held.", unit="products", sql_type=sa.Integer(), missing=0
)
register_builtin_attribute("held_products", _SET, "Codes of the products held.", missing=[])
register_builtin_attribute(
    "held_categories",
    _SET,
    "Categories of the products held (deposit, wealth, fund, insurance, loan, card).",
    missing=[],
)
register_builtin_attribute(
    "txn_count_90d", _I, "Transactions in the last 90 days.", unit="transactions", sql_type=sa.Integer(), missing=0
)
register_builtin_attribute(
    "txn_amount_90d", _N, "Total transaction amount in the last 90 days.", unit=_MONEY, missing=0
)
register_builtin_attribute(
    "days_since_last_txn", _I, "Days since the last transaction; null if never.", unit="days", sql_type=sa.Integer()
)
register_builtin_attribute(
    "logins_30d", _I, "App logins in the last 30 days.", unit="logins", sql_type=sa.Integer(), missing=0
)
register_builtin_attribute(
    "referrals_12m", _I, "Referrals in the last 12 months.", unit="referrals", sql_type=sa.Integer(), missing=0
)
register_builtin_attribute(
    "nps_latest",
    _I,
    "The customer's latest NPS answer (0..10); null when never surveyed.",
    unit="score",
    sql_type=sa.Integer(),
)
register_builtin_attribute(
    "is_promoter", _B, "The latest NPS answer is 9 or 10; false when never surveyed.", missing=False
)
register_builtin_attribute(
    "is_detractor", _B, "The latest NPS answer is 0..6; false when never surveyed.", missing=False
)
register_builtin_attribute("csat_avg", _N, "Average CSAT answer (1..5) over all answers; null when none.", unit="score")
register_builtin_attribute(
    "open_complaints",
    _I,
    "Complaints open or in progress; 0 when none.",
    unit="complaints",
    sql_type=sa.Integer(),
    missing=0,
)
register_builtin_attribute(
    "days_to_resolve_avg",
    _N,
    "Average days from opening to resolution of the customer's resolved complaints; null when none.",
    unit="days",
)
register_builtin_attribute(
    "birthday_month",
    _B,
    "This month is the customer's birth month; false when the birth date is unknown.",
    missing=False,
)
register_builtin_attribute(
    "communities_joined",
    _I,
    "Communities the customer is a member of now.",
    unit="communities",
    sql_type=sa.Integer(),
    missing=0,
)
register_builtin_attribute(
    "community_active_30d",
    _B,
    "The customer posted, replied, attended a meeting or shared in a community in the last 30 days.",
    missing=False,
)
register_builtin_attribute(
    "activities_attended_12m",
    _I,
    "Activities (salons, lectures, appreciation events, campaigns) attended in the last 12 months.",
    unit="activities",
    sql_type=sa.Integer(),
    missing=0,
)
register_builtin_attribute(
    "referrals_converted_12m",
    _I,
    "Referrals of the customer that converted (the referee became an active customer) in the last 12 months.",
    unit="referrals",
    sql_type=sa.Integer(),
    missing=0,
)
register_builtin_attribute(
    "advocacy_score",
    _I,
    "3 x referrals_converted_12m + activities_attended_12m + communities_joined + 2 when community_active_30d.",
    unit="points",
    sql_type=sa.Integer(),
    missing=0,
)
register_builtin_attribute(
    "contribution_monthly",
    _N,
    "What the customer earns the bank in a month: the bank's own figure when it feeds one (the number custom "
    "attribute bank_contribution_monthly), else derived from balances and the products' contribution margins "
    "(|balance| x annual margin / 12 + monthly fee, per held product).",
    unit=_MONEY,
    sql_type=sa.Numeric(),
    missing=0,
)
register_builtin_attribute(
    "churn_risk",
    _N,
    "The probability (0..1) that the customer's assets fall by the churn model's decline share within its horizon: "
    "the newest churn model version (a logistic regression fitted on the bank's own history of declines, "
    "GET /v1/reports/churn-models) over assets, their 3-month trend, products held, logins and transactions; "
    "null before a model is fitted.",
    unit="probability",
    sql_type=sa.Numeric(),
)


# ---- the catalog -----------------------------------------------------------------------------------------------


class AttributeCatalog:
    """The built-ins plus the bank's custom attributes: what a condition may reference."""

    def __init__(self, custom: Iterable[CustomAttributeDefinitionLike] = ()) -> None:
        self._attributes: dict[str, Attribute] = dict(BUILTIN_ATTRIBUTES)
        for definition in sorted(custom, key=lambda d: d.name):
            if definition.name in self._attributes:  # a built-in always wins; definitions should not shadow one
                continue
            self._attributes[definition.name] = Attribute(
                name=definition.name,
                type=AttributeType(definition.type),
                description=definition.description or "",
                unit=definition.unit,
                source=AttributeSource.custom,
            )

    def get(self, name: str) -> Attribute | None:
        return self._attributes.get(name)

    def __getitem__(self, name: str) -> Attribute:
        return self._attributes[name]

    def __contains__(self, name: object) -> bool:
        return name in self._attributes

    def __iter__(self) -> Iterator[Attribute]:
        return iter(self._attributes.values())

    def __len__(self) -> int:
        return len(self._attributes)

    @property
    def custom(self) -> list[Attribute]:
        return [a for a in self._attributes.values() if a.source is AttributeSource.custom]

    def suggest(self, name: str) -> list[str]:
        """Attribute names close to a misspelt one."""
        return get_close_matches(name, list(self._attributes), n=3, cutoff=0.6)


def is_builtin_attribute(name: str) -> bool:
    """Whether a name is taken by a built-in (a custom attribute must not use it)."""
    return name in BUILTIN_ATTRIBUTES


class AttributeRead(BaseModel):
    """An attribute conditions may reference, as GET /v1/attributes lists it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "aum_avg_3m",
                    "type": "number",
                    "unit": "currency",
                    "source": "builtin",
                    "description": "Daily-average AUM over the trailing 3 months (time-weighted over reported days).",
                    "operators": ["eq", "ne", "lt", "lte", "gt", "gte", "in", "not_in", "between", "is_null"],
                },
            ]
        }
    )

    name: str
    type: AttributeType
    unit: str | None
    description: str
    source: AttributeSource
    operators: list[Operator]


def list_attributes(catalog: AttributeCatalog) -> list[AttributeRead]:
    """Every attribute of a catalog for GET /v1/attributes: built-ins in catalog order, then custom by name."""
    return [
        AttributeRead(
            name=a.name,
            type=a.type,
            unit=a.unit,
            description=a.description,
            source=a.source.value,
            operators=list(OPERATORS_BY_TYPE[a.type]),
        )
        for a in catalog
    ]


async def load_catalog(session) -> AttributeCatalog:
    """The catalog as it stands: built-ins plus every custom attribute the bank has declared."""
    return AttributeCatalog(await list_attribute_definitions(session))


def features_for_customers(customer_ids: ColumnElement[Any], *, lateral: bool = False) -> FromClause:
    """customer_features rows of the given customers only: the SQL function customer_features_for(ids), the same
    SELECT as the view with the filter pushed into every aggregate. Its columns are the view's, so conditions
    compile against it unchanged (use it for one customer or a chunk; the view for the whole population).

    Postgres inlines the function (and plans its body with the ids) only when `customer_ids` holds no subquery:
    pass a bound parameter, or with `lateral` an array of a column of a table joined before it; a sub-select
    makes it a function scan planned on every call, several times slower."""
    columns = [sa.column(c.name, c.type) for c in customer_features.c]
    function = sa.func.customer_features_for(customer_ids).table_valued(*columns)
    return function.lateral("customer_features") if lateral else function.alias("customer_features")


def features_between(id_from: ColumnElement[Any], id_to: ColumnElement[Any]) -> FromClause:
    """customer_features rows of the customers with ids in [id_from, id_to]: customer_features_between, the same
    SELECT with a range in every aggregate (one index range scan per table: a chunk of a batch run)."""
    columns = [sa.column(c.name, c.type) for c in customer_features.c]
    return sa.func.customer_features_between(id_from, id_to).table_valued(*columns).alias("customer_features")


RISK_VALID_DAYS = sa.literal_column(
    "coalesce(nullif(current_setting('tierwise.risk_valid_days', true), '')::int, 365)", sa.Integer()
)
"""How many days a risk assessment stays valid, as the features' risk_tolerance reads it: the connection's setting
(app.core.db.server_settings), 365 without one."""


def features_stable_until(customer: FromClause, features: FromClause) -> ColumnElement[Any]:
    """The instant until which a customer's features stay what they are now unless the customer's data is
    written: the next midnight (age, the windows of days behind the averages and counts, and the days since the last
    transaction move with current_date), the customer's next month of tenure (tenure_months moves with now()),
    and the expiry of a risk assessment that is valid now (risk_tolerance). Never later than the first change;
    at a month's end it may be a few days early, which costs a recomputation and nothing else.

    customer: the customer's row (its risk_assessed_at); features: the customer's features row."""
    next_midnight = sa.cast(sa.func.current_date() + sa.literal_column("1", sa.Integer()), sa.DateTime(timezone=True))
    risk_expiry = sa.case(
        (
            features.c.risk_tolerance.is_not(None),
            customer.c.risk_assessed_at + sa.func.make_interval(0, 0, 0, RISK_VALID_DAYS),
        )
    )
    next_month = features.c.onboarded_at + sa.func.make_interval(0, features.c.tenure_months + 1)
    return sa.func.least(next_midnight, risk_expiry, next_month, type_=sa.DateTime(timezone=True))
