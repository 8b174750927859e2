"""The condition language's typed AST (pydantic v2) and its parser, which points at the offending node.

A condition is a JSON document:

    {"all": [...]} | {"any": [...]} | {"not": <condition>} | {"always": true}
    | {"attr": "aum", "op": "gte", "value": 500000}

`parse_condition` is the one parser: it walks raw JSON and raises `InvalidInput` with a JSON pointer to the
offending node (or member of a node). The pydantic `Condition` type delegates to it, so a request body with a
`Condition` field reports the same messages at the same pointers (e.g. /tiers/2/condition/all/1/op).
Whether an attribute exists and whether a value fits its type is the catalog's business: see
`app.rules.compile.check_condition`. The node models and the parser are one grammar, kept in one module; the
schema each operator's comparison publishes is in `app.rules.shapes`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, WithJsonSchema, WrapValidator
from pydantic_core import InitErrorDetails, PydanticCustomError

from app.core.errors import InvalidInput
from app.core.strict import NO_NUL_PATTERN
from app.rules.shapes import COMPARISON_SHAPES, MAX_LIST_VALUES, MAX_STRING_LENGTH

MAX_DEPTH = 8
"""The deepest a node may sit: the root is at depth 1."""
MAX_NODES = 200
"""The most nodes (all, any, not, always and comparisons) a condition document may hold."""


class Operator(StrEnum):
    """A comparison's operator."""

    eq = "eq"
    ne = "ne"
    lt = "lt"
    lte = "lte"
    gt = "gt"
    gte = "gte"
    in_ = "in"
    not_in = "not_in"
    between = "between"
    is_null = "is_null"
    contains = "contains"
    contains_any = "contains_any"
    contains_none = "contains_none"


SCALAR_OPERATORS = frozenset(
    {Operator.eq, Operator.ne, Operator.lt, Operator.lte, Operator.gt, Operator.gte, Operator.contains}
)
"""Operators whose value is one scalar."""
LIST_OPERATORS = frozenset({Operator.in_, Operator.not_in, Operator.contains_any, Operator.contains_none})
"""Operators whose value is a non-empty list of scalars."""

Scalar = bool | int | float | str
_SCALAR_SCHEMA: dict[str, Any] = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"}]}
_VALUE_SCHEMA: dict[str, Any] = {
    "anyOf": [*_SCALAR_SCHEMA["anyOf"], {"type": "array", "items": _SCALAR_SCHEMA, "minItems": 1}],
    "description": "A scalar for eq ne lt lte gt gte contains; a non-empty list for in not_in contains_any "
    "contains_none; [low, high] for between; true or false for is_null. Dates are ISO strings "
    "(YYYY-MM-DD).",
    "examples": [500000, "retail", ["fund", "wealth"], [25, 40], True],
}

_NODE_CONFIG = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)


class AllCondition(BaseModel):
    """True when every member is true. A condition nests at most 8 levels (all, any and not each add one)
    and holds at most 200 nodes: deeper or larger is a 422 at the node."""

    model_config = ConfigDict(
        **_NODE_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "all": [
                        {"attr": "aum_avg_3m", "op": "gte", "value": 500000},
                        {"attr": "tenure_months", "op": "gte", "value": 12},
                    ]
                },
            ]
        },
    )

    all: list[Condition] = Field(min_length=1)


class AnyCondition(BaseModel):
    """True when at least one member is true."""

    model_config = ConfigDict(
        **_NODE_CONFIG,
        json_schema_extra={
            "examples": [
                {
                    "any": [
                        {"attr": "tenure_months", "op": "gte", "value": 36},
                        {"attr": "held_categories", "op": "contains", "value": "wealth"},
                    ]
                },
            ]
        },
    )

    any: list[Condition] = Field(min_length=1)


class NotCondition(BaseModel):
    """True when its member is false (and false when its member is unknown, as in SQL)."""

    model_config = ConfigDict(
        **_NODE_CONFIG,
        json_schema_extra={
            "examples": [
                {"not": {"attr": "risk_level", "op": "lt", "value": 2}},
            ]
        },
    )

    not_: Condition = Field(alias="not")


class AlwaysCondition(BaseModel):
    """Always true: the condition of an unconditional (catch-all) tier."""

    model_config = ConfigDict(**_NODE_CONFIG, json_schema_extra={"examples": [{"always": True}]})

    always: Literal[True]


class Comparison(BaseModel):
    """A test of one attribute: {"attr": "aum", "op": "gte", "value": 500000}."""

    model_config = ConfigDict(
        **_NODE_CONFIG,
        json_schema_extra={
            "examples": [
                {"attr": "aum_avg_3m", "op": "gte", "value": 500000},
                {"attr": "segment", "op": "in", "value": ["retail", "small_business"]},
                {"attr": "age", "op": "between", "value": [25, 40]},
                {"attr": "held_categories", "op": "contains_none", "value": ["loan", "card"]},
                {"attr": "days_since_last_txn", "op": "is_null", "value": True},
            ]
        },
    )

    attr: str = Field(
        min_length=1, max_length=64, pattern=NO_NUL_PATTERN, description="An attribute name from GET /v1/attributes."
    )
    op: Operator
    value: Annotated[Any, WithJsonSchema(_VALUE_SCHEMA)]

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: Any, handler: Any) -> dict[str, Any]:
        """One of the four shapes, by operator (defined below: they need nothing from this class)."""
        return {
            "oneOf": [handler(shape.__pydantic_core_schema__) for shape in COMPARISON_SHAPES],
            "description": cls.__doc__,
        }


class ConditionResult(BaseModel):
    """One comparison as evaluated for a customer: where it sits in the condition, the customer's value, and the
    result."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "pointer": "/tiers/1/condition/all/0",
                    "attribute": "aum_avg_3m",
                    "operator": "gte",
                    "threshold": 500000,
                    "value": "620000.00",
                    "result": True,
                }
            ]
        }
    )

    pointer: str = Field(description="JSON pointer of the comparison in its document, e.g. /tiers/1/condition/all/0.")
    attribute: str
    operator: Operator
    threshold: Annotated[Any, WithJsonSchema(_VALUE_SCHEMA)] = Field(description="The comparison's value, as written.")
    value: str | int | bool | list[str] | None = Field(
        description="The customer's value: a number as a decimal string (an integer attribute as an integer), a date "
        "as YYYY-MM-DD, a set as a list; null when the customer has no value."
    )
    result: bool | None = Field(description="Whether the comparison held; null when the value is missing.")


def _validate_condition(value: Any, handler: Any) -> Any:
    """Validate through `parse_condition`, re-raising its error at the exact location inside the document."""
    if isinstance(value, _NODE_TYPES):
        return value
    try:
        return parse_condition(value, "")
    except InvalidInput as exc:
        field = exc.errors[0]
        loc = tuple(int(part) if part.isdigit() else part for part in _split_pointer(field["pointer"]))
        error = PydanticCustomError("invalid_condition", "{detail}", {"detail": field["detail"]})
        raise ValidationError.from_exception_data(
            "Condition", [InitErrorDetails(type=error, loc=loc, input=value)]
        ) from None


Condition = Annotated[
    AllCondition | AnyCondition | NotCondition | AlwaysCondition | Comparison,
    WrapValidator(_validate_condition),
]
"""A condition document: usable as a request-body field; validated by `parse_condition`."""

_NODE_TYPES = (AllCondition, AnyCondition, NotCondition, AlwaysCondition, Comparison)
for _model in _NODE_TYPES:
    _model.model_rebuild()

CONDITION_EXAMPLES: list[dict[str, Any]] = [
    {
        "all": [
            {"attr": "aum_avg_3m", "op": "gte", "value": 500000},
            {"attr": "tenure_months", "op": "gte", "value": 12},
        ]
    },
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
    {"always": True},
]
"""Examples for request bodies: `Field(examples=CONDITION_EXAMPLES)`."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(Condition)


def dump_condition(condition: Condition) -> dict[str, Any]:
    """The JSON form of a condition (what a JSONB column stores and a response returns)."""
    return _ADAPTER.dump_python(condition, mode="json", by_alias=True)


# ---- the parser --------------------------------------------------------------------------------------------

_COMBINATORS = ("all", "any", "not", "always")
_COMPARISON_KEYS = ("attr", "op", "value")


def parse_condition(raw: object, pointer: str = "") -> Condition:
    """Parse raw JSON into a Condition; raise InvalidInput at the offending node for any malformed shape.

    pointer: the JSON pointer of the condition in the caller's body (e.g. "/tiers/2/condition"); every error
    pointer starts with it. Checked here: the node shapes, operators, the shape of each value for its operator,
    empty all/any, depth (MAX_DEPTH) and size (MAX_NODES). Not checked here: attribute names and value types,
    which need the catalog (`app.rules.compile.check_condition`).
    """
    counter = _NodeCounter(pointer)
    return _parse_node(raw, pointer, 1, counter)


class _NodeCounter:
    def __init__(self, root: str) -> None:
        self.root = root
        self.count = 0

    def add(self) -> None:
        self.count += 1
        if self.count > MAX_NODES:
            raise InvalidInput(self.root, f"the condition has more than {MAX_NODES} nodes; simplify it")


def _parse_node(raw: object, pointer: str, depth: int, counter: _NodeCounter) -> Condition:
    if not isinstance(raw, dict):
        raise InvalidInput(
            pointer,
            f"a condition must be a JSON object, not {_json_kind(raw)}; "
            'e.g. {"attr": "aum", "op": "gte", "value": 500000}',
        )
    if depth > MAX_DEPTH:
        raise InvalidInput(pointer, f"the condition is nested more than {MAX_DEPTH} levels deep")
    counter.add()
    keys = list(raw)
    combinators = [k for k in keys if k in _COMBINATORS]
    if combinators:
        if len(keys) > 1:
            raise InvalidInput(
                pointer, f"a '{combinators[0]}' node takes no other keys; found " + ", ".join(f"'{k}'" for k in keys)
            )
        return _parse_combinator(combinators[0], raw[combinators[0]], pointer, depth, counter)
    if "attr" in raw or "op" in raw:
        return _parse_comparison(raw, pointer)
    found = ", ".join(f"'{k}'" for k in keys) or "no keys"
    raise InvalidInput(
        pointer,
        "unknown condition shape: expected one of all, any, not, always, or a "
        f"comparison with attr, op and value; found {found}",
    )


def _parse_combinator(kind: str, member: object, pointer: str, depth: int, counter: _NodeCounter) -> Condition:
    here = f"{pointer}/{kind}"
    if kind == "always":
        if member is not True:
            raise InvalidInput(here, 'must be true; for a condition that never matches use {"not": {"always": true}}')
        return AlwaysCondition.model_construct(always=True)
    if kind == "not":
        return NotCondition.model_construct(not_=_parse_node(member, here, depth + 1, counter))
    if not isinstance(member, list):
        raise InvalidInput(here, f"'{kind}' takes an array of conditions, not {_json_kind(member)}")
    if not member:
        raise InvalidInput(here, f"'{kind}' needs at least one condition")
    members = [_parse_node(item, f"{here}/{i}", depth + 1, counter) for i, item in enumerate(member)]
    if kind == "all":
        return AllCondition.model_construct(all=members)
    return AnyCondition.model_construct(any=members)


def _parse_comparison(raw: dict[str, Any], pointer: str) -> Comparison:
    for key in raw:
        if key not in _COMPARISON_KEYS:
            raise InvalidInput(
                f"{pointer}/{escape_pointer_token(str(key))}",
                f"unknown key '{key}' in a comparison; a comparison has attr, op and value",
            )
    for key in _COMPARISON_KEYS:
        if key not in raw:
            raise InvalidInput(pointer, f"a comparison needs '{key}'")
    attr = raw["attr"]
    if not isinstance(attr, str) or not attr:
        raise InvalidInput(f"{pointer}/attr", f"'attr' must be an attribute name, not {_json_kind(attr)}")
    if len(attr) > 64:
        raise InvalidInput(f"{pointer}/attr", "'attr' is longer than 64 characters")
    op = raw["op"]
    try:
        operator = Operator(op) if isinstance(op, str) else None
    except ValueError:
        operator = None
    if operator is None:
        shown = f"'{op}'" if isinstance(op, str) else _json_kind(op)
        raise InvalidInput(
            f"{pointer}/op", f"unknown operator {shown}; expected one of " + ", ".join(o.value for o in Operator)
        )
    value = _parse_value(operator, raw["value"], f"{pointer}/value")
    return Comparison.model_construct(attr=attr, op=operator, value=value)


def _parse_value(op: Operator, value: object, pointer: str) -> Any:
    if op is Operator.is_null:
        if not isinstance(value, bool):
            raise InvalidInput(pointer, f"'is_null' takes true or false, not {_json_kind(value)}")
        return value
    if op in SCALAR_OPERATORS:
        if value is None:
            raise InvalidInput(
                pointer, f'\'{op}\' takes a value; to test for a missing value use {{"op": "is_null", "value": true}}'
            )
        return _parse_scalar(op, value, pointer)
    if op is Operator.between:
        if not isinstance(value, list) or len(value) != 2:
            raise InvalidInput(pointer, f"'between' takes [low, high], not {_json_kind(value)}")
        return [_parse_scalar(op, item, f"{pointer}/{i}") for i, item in enumerate(value)]
    # LIST_OPERATORS
    if not isinstance(value, list):
        raise InvalidInput(pointer, f"'{op}' takes a non-empty array of values, not {_json_kind(value)}")
    if not value:
        raise InvalidInput(pointer, f"'{op}' needs at least one value")
    if len(value) > MAX_LIST_VALUES:
        raise InvalidInput(pointer, f"'{op}' takes at most {MAX_LIST_VALUES} values")
    return [_parse_scalar(op, item, f"{pointer}/{i}") for i, item in enumerate(value)]


def _parse_scalar(op: Operator, value: object, pointer: str) -> Scalar:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float | Decimal):
        if not math.isfinite(value):
            raise InvalidInput(pointer, "must be a finite number")
        if isinstance(value, Decimal):  # JSON has no decimals: keep the value a JSON number
            return int(value) if value == value.to_integral_value() else float(value)
        return value
    if isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            raise InvalidInput(pointer, f"a string value has at most {MAX_STRING_LENGTH} characters")
        return value
    raise InvalidInput(pointer, f"'{op}' takes a number, string, boolean or ISO date here, not {_json_kind(value)}")


# ---- helpers ---------------------------------------------------------------------------------------------------


def iter_comparisons(condition: Condition, pointer: str = "") -> Iterator[tuple[str, Comparison]]:
    """Every comparison leaf with its JSON pointer, in document order."""
    if isinstance(condition, Comparison):
        yield pointer, condition
    elif isinstance(condition, AllCondition):
        for i, member in enumerate(condition.all):
            yield from iter_comparisons(member, f"{pointer}/all/{i}")
    elif isinstance(condition, AnyCondition):
        for i, member in enumerate(condition.any):
            yield from iter_comparisons(member, f"{pointer}/any/{i}")
    elif isinstance(condition, NotCondition):
        yield from iter_comparisons(condition.not_, f"{pointer}/not")


def referenced_attributes(condition: Condition) -> set[str]:
    """The attribute names a condition reads (e.g. to refuse deleting a custom attribute still in use)."""
    return {leaf.attr for _, leaf in iter_comparisons(condition)}


def _json_kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | Decimal):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array" if value else "an empty array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def escape_pointer_token(token: str) -> str:
    """A key as a JSON pointer token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _split_pointer(pointer: str) -> list[str]:
    if not pointer:
        return []
    return [part.replace("~1", "/").replace("~0", "~") for part in pointer.lstrip("/").split("/")]
