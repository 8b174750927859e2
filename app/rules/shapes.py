"""The JSON schema of a comparison, by operator: which value each operator takes (the parser's rules in
`app.rules.schema`, stated for clients and generators). Validation is `parse_condition`'s, with its pointers and
messages; these models only publish."""

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeAliasType

from app.core.strict import DAY_PATTERN, NO_NUL_PATTERN

MAX_LIST_VALUES = 1000
"""The most values an in / not_in / contains_any / contains_none list may hold."""
MAX_STRING_LENGTH = 500
"""The longest string value a comparison may hold."""

_SCALAR_VALUE = Annotated[
    float | Annotated[str, Field(max_length=MAX_STRING_LENGTH, pattern=NO_NUL_PATTERN)] | bool,
    Field(description="A number, a string, a boolean, or a date as YYYY-MM-DD."),
]
# What each operator can compare, whatever the attribute: order by numbers and dates, sets hold strings, and a list
# holds one type (no attribute type takes a boolean by order, a number in a set, or a list of mixed values).
_DATE = Annotated[str, Field(pattern=DAY_PATTERN, description="A date, YYYY-MM-DD.")]
_ORDERED_VALUE = Annotated[float | _DATE, Field(description="A number, or a date as YYYY-MM-DD.")]
_SET_MEMBER = Annotated[str, Field(max_length=MAX_STRING_LENGTH, pattern=NO_NUL_PATTERN)]
ScalarOperator = TypeAliasType("ScalarOperator", Literal["eq", "ne"])
OrderOperator = TypeAliasType("OrderOperator", Literal["lt", "lte", "gt", "gte"])
ListOperator = TypeAliasType("ListOperator", Literal["in", "not_in"])
SetListOperator = TypeAliasType("SetListOperator", Literal["contains_any", "contains_none"])


class _ComparisonOf(BaseModel):
    model_config = ConfigDict(extra="forbid")

    attr: str = Field(
        min_length=1, max_length=64, pattern=NO_NUL_PATTERN, description="An attribute name from GET /v1/attributes."
    )


class ScalarComparison(_ComparisonOf):
    """Compare an attribute with one value: {"attr": "segment", "op": "eq", "value": "retail"}."""

    op: ScalarOperator
    value: _SCALAR_VALUE


class OrderComparison(_ComparisonOf):
    """Order a number or date attribute: {"attr": "aum_avg_3m", "op": "gte", "value": 500000}."""

    op: OrderOperator
    value: _ORDERED_VALUE


class ContainsComparison(_ComparisonOf):
    """Whether a set attribute holds a string: {"attr": "held_products", "op": "contains", "value": "mortgage"}."""

    op: Literal["contains"]
    value: _SET_MEMBER


class ListComparison(_ComparisonOf):
    """Test an attribute against a list of numbers or of strings: {"attr": "segment", "op": "in", "value":
    ["retail"]}."""

    op: ListOperator
    value: (
        Annotated[list[float], Field(min_length=1, max_length=MAX_LIST_VALUES)]
        | Annotated[list[_SET_MEMBER], Field(min_length=1, max_length=MAX_LIST_VALUES)]
    )


class SetListComparison(_ComparisonOf):
    """Test a set attribute against strings: {"attr": "held_categories", "op": "contains_none", "value":
    ["loan"]}."""

    op: SetListOperator
    value: list[_SET_MEMBER] = Field(min_length=1, max_length=MAX_LIST_VALUES)


class BetweenComparison(_ComparisonOf):
    """Low <= attribute <= high: {"attr": "age", "op": "between", "value": [25, 40]}."""

    op: Literal["between"]
    value: (
        Annotated[list[float], Field(min_length=2, max_length=2)]
        | Annotated[list[_DATE], Field(min_length=2, max_length=2)]
    ) = Field(description="[low, high], low <= high: two numbers or two dates.")


class IsNullComparison(_ComparisonOf):
    """Whether the customer has no value: {"attr": "days_since_last_txn", "op": "is_null", "value": true}."""

    op: Literal["is_null"]
    value: bool


COMPARISON_SHAPES = (
    ScalarComparison,
    OrderComparison,
    ContainsComparison,
    ListComparison,
    SetListComparison,
    BetweenComparison,
    IsNullComparison,
)
