"""The one compiler: a condition becomes a SQLAlchemy boolean expression over the customer features relation.

The same expression serves one customer and the whole population, so a customer evaluated alone and in a
batch always lands in the same place. Every value from a document is a bound parameter; attribute names pick
columns from the catalog, and custom attribute names are bound parameters too.

NULL semantics (decided here, once): inside a condition SQL's three-valued logic applies, so a comparison with
a missing value is unknown, `not` of unknown is unknown, `all` is false if any member is false and `any` is
true if any member is true. The compiled condition is `coalesce((...), false)`: unknown counts as no match,
and the result is always true or false, never null. So {"attr": "risk_level", "op": "ne", "value": 3} and
{"not": {"attr": "risk_level", "op": "eq", "value": 3}} are both false for a customer without a risk level;
test for a missing value with {"op": "is_null", "value": true}.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.sql import ColumnElement, FromClause
from sqlalchemy.sql.type_api import TypeEngine

from app.core.errors import InvalidInput
from app.rules.attributes import (
    OPERATORS_BY_TYPE,
    SQL_TYPES,
    Attribute,
    AttributeCatalog,
    AttributeSource,
    AttributeType,
    customer_features,
)
from app.rules.schema import (
    AllCondition,
    AlwaysCondition,
    AnyCondition,
    Comparison,
    Condition,
    NotCondition,
    Operator,
    escape_pointer_token,
)
from app.rules.values import ISO_DATE, coerce_attribute_value, coerce_scalar, json_value, unknown_attribute

_JSON_KIND = {
    AttributeType.number: "number",
    AttributeType.integer: "number",
    AttributeType.string: "string",
    AttributeType.boolean: "boolean",
    AttributeType.date: "string",
    AttributeType.string_set: "array",
}


# ---- public API ------------------------------------------------------------------------------------------------


def compile_condition(
    condition: Condition, catalog: AttributeCatalog, features: FromClause = customer_features, *, pointer: str = ""
) -> ColumnElement[bool]:
    """The condition as a boolean SQL expression over `features` (always true or false, never null).

    features: customer_features, an alias of it, or any subquery with its columns (e.g. `what_if_features`).
    pointer: where the condition sits in the caller's body; InvalidInput errors point below it.
    Raises InvalidInput for an unknown attribute (at .../attr), an operator the attribute's type does not take
    (at .../op) and a value that does not fit the attribute's type (at .../value or .../value/<i>).
    """
    # coalesce, not `IS TRUE`: SQLAlchemy renders `NOT (x) IS true`, which Postgres reads as NOT ((x) IS true).
    return sa.func.coalesce(_Compiler(catalog, features).node(condition, pointer), sa.false(), type_=sa.Boolean())


def check_condition(condition: Condition, catalog: AttributeCatalog, pointer: str = "") -> None:
    """Validate a parsed condition against the catalog (attributes, operators, value types) without running it."""
    compile_condition(condition, catalog, customer_features, pointer=pointer)


@dataclass(frozen=True, slots=True)
class ExplainedLeaf:
    """One comparison of a condition, with SQL for the customer's value and the comparison's own result."""

    pointer: str
    attribute: str
    attribute_type: AttributeType
    operator: Operator
    threshold: Any
    """The comparison's value as written in the document (JSON)."""
    value: ColumnElement[Any]
    """The customer's value of the attribute, labelled `value_key`."""
    result: ColumnElement[bool | None]
    """The comparison's result, labelled `result_key`: true, false, or null (unknown: the value is missing)."""

    @property
    def value_key(self) -> str:
        return self.value.key

    @property
    def result_key(self) -> str:
        return self.result.key

    @property
    def columns(self) -> tuple[ColumnElement[Any], ColumnElement[Any]]:
        return self.value, self.result


def compile_explanation(
    condition: Condition,
    catalog: AttributeCatalog,
    features: FromClause = customer_features,
    *,
    pointer: str = "",
    label_prefix: str = "leaf",
) -> list[ExplainedLeaf]:
    """Each comparison leaf in document order, with labelled SQL to select next to the evaluation itself.

    Select `*leaf.columns` for every leaf in the same statement as the condition (one round trip), then turn the
    row into a readable explanation with `explain_row`. Labels are f"{label_prefix}_{i}_value" and
    f"{label_prefix}_{i}_result"; give each condition in one statement its own prefix (e.g. per tier).
    """
    compiler = _Compiler(catalog, features, explain=True)
    compiler.node(condition, pointer)
    leaves = []
    for i, (leaf_pointer, leaf, attribute, value, result) in enumerate(compiler.leaves):
        leaves.append(
            ExplainedLeaf(
                pointer=leaf_pointer,
                attribute=leaf.attr,
                attribute_type=attribute.type,
                operator=leaf.op,
                threshold=leaf.value,
                value=value.label(f"{label_prefix}_{i}_value"),
                result=result.label(f"{label_prefix}_{i}_result"),
            )
        )
    return leaves


def explain_row(leaves: Sequence[ExplainedLeaf], row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A readable, JSON-serialisable explanation from a selected row (`row._mapping` or `result.mappings()`).

    Each item: {"pointer", "attribute", "operator", "threshold", "value", "result"}; numbers are strings of their
    exact decimal value (integers stay integers), dates ISO strings, sets lists; result is true, false or null
    (unknown, when the customer's value is missing).
    """
    return [
        {
            "pointer": leaf.pointer,
            "attribute": leaf.attribute,
            "operator": leaf.operator,
            "threshold": leaf.threshold,
            "value": json_value(row[leaf.value_key], leaf.attribute_type),
            "result": row[leaf.result_key],
        }
        for leaf in leaves
    ]


def what_if_features(
    catalog: AttributeCatalog, values: Mapping[str, Any], *, pointer: str = "", name: str = "customer_features"
) -> sa.Subquery:
    """A one-row subquery with customer_features' columns and types, holding supplied attribute values.

    Compile a condition against it to evaluate "what if a customer had these values" with the very same SQL.
    values: {attribute name: JSON value} (built-in or custom; null means unknown). A built-in not supplied takes
    what the view shows for a customer without data (0 for sums and counts, [] for sets), else null.
    Raises InvalidInput at f"{pointer}/{name}" for an unknown attribute or a value of the wrong type.
    """
    supplied: dict[str, Any] = {}
    for attr_name, raw in values.items():
        here = f"{pointer}/{escape_pointer_token(attr_name)}"
        attribute = catalog.get(attr_name)
        if attribute is None:
            raise InvalidInput(here, unknown_attribute(attr_name, catalog))
        supplied[attr_name] = None if raw is None else coerce_attribute_value(attribute, raw, here)

    by_column = {a.column: a for a in catalog if a.source is AttributeSource.builtin}
    custom_pairs: list[ColumnElement[Any]] = []
    for attribute in catalog.custom:
        if supplied.get(attribute.name) is not None:
            custom_pairs += [
                sa.cast(sa.literal(attribute.name), sa.Text()),
                _typed(supplied[attribute.name], SQL_TYPES[attribute.type]),
            ]

    columns: list[ColumnElement[Any]] = []
    for column in customer_features.c:
        attribute = by_column.get(column.name)
        if column.name == "attributes":
            expression: ColumnElement[Any] = sa.func.jsonb_build_object(*custom_pairs, type_=JSONB())
        elif attribute is not None:
            value = supplied[attribute.name] if attribute.name in supplied else attribute.missing
            expression = _typed(value, column.type)
        else:
            expression = sa.cast(sa.null(), column.type)
        columns.append(expression.label(column.name))
    return sa.select(*columns).subquery(name)


# ---- the compiler ----------------------------------------------------------------------------------------------


class _Compiler:
    def __init__(self, catalog: AttributeCatalog, features: FromClause, *, explain: bool = False) -> None:
        self.catalog = catalog
        self.features = features
        self.explain = explain
        self.leaves: list[tuple[str, Comparison, Attribute, ColumnElement[Any], ColumnElement[Any]]] = []

    def node(self, node: Condition, pointer: str) -> ColumnElement[bool]:
        if isinstance(node, Comparison):
            return self.comparison(node, pointer)
        if isinstance(node, AllCondition):
            return sa.and_(*(self.node(m, f"{pointer}/all/{i}") for i, m in enumerate(node.all)))
        if isinstance(node, AnyCondition):
            return sa.or_(*(self.node(m, f"{pointer}/any/{i}") for i, m in enumerate(node.any)))
        if isinstance(node, NotCondition):
            return sa.not_(self.node(node.not_, f"{pointer}/not"))
        if isinstance(node, AlwaysCondition):
            return sa.true()
        raise TypeError(f"not a condition node: {type(node).__name__}")

    def comparison(self, leaf: Comparison, pointer: str) -> ColumnElement[bool]:
        attribute = self.catalog.get(leaf.attr)
        if attribute is None:
            raise InvalidInput(f"{pointer}/attr", unknown_attribute(leaf.attr, self.catalog))
        allowed = OPERATORS_BY_TYPE[attribute.type]
        if leaf.op not in allowed:
            raise InvalidInput(
                f"{pointer}/op",
                f"'{leaf.op}' does not apply to '{leaf.attr}', a {attribute.type} "
                f"attribute; use one of " + ", ".join(o.value for o in allowed),
            )
        value = attribute_expression(attribute, self.features)
        predicate = _predicate(attribute, leaf.op, value, self._operand(attribute, leaf, f"{pointer}/value"))
        if self.explain:
            self.leaves.append((pointer, leaf, attribute, value, predicate))
        return predicate

    def _operand(self, attribute: Attribute, leaf: Comparison, pointer: str) -> Any:
        op, raw = leaf.op, leaf.value
        if op is Operator.is_null:
            if not isinstance(raw, bool):
                raise InvalidInput(pointer, f"'is_null' takes true or false, not {raw!r}")
            return raw
        element_type = AttributeType.string if attribute.type is AttributeType.string_set else attribute.type
        if op is Operator.between:
            if not isinstance(raw, list | tuple) or len(raw) != 2:
                raise InvalidInput(pointer, "'between' takes [low, high]")
            low, high = (coerce_scalar(attribute, element_type, v, f"{pointer}/{i}") for i, v in enumerate(raw))
            if low > high:
                raise InvalidInput(pointer, f"'between' takes [low, high] with low <= high; got {list(raw)!r}")
            return low, high
        if isinstance(raw, list | tuple):
            if op in (Operator.in_, Operator.not_in, Operator.contains_any, Operator.contains_none) and raw:
                return [coerce_scalar(attribute, element_type, v, f"{pointer}/{i}") for i, v in enumerate(raw)]
            raise InvalidInput(pointer, f"'{op}' takes a single value, not a list")
        if op in (Operator.in_, Operator.not_in, Operator.contains_any, Operator.contains_none):
            raise InvalidInput(pointer, f"'{op}' takes a non-empty list of values")
        return coerce_scalar(attribute, element_type, raw, pointer)


def attribute_expression(attribute: Attribute, features: FromClause) -> ColumnElement[Any]:
    """The SQL expression of an attribute's value over `features` (typed; null when missing)."""
    if attribute.source is AttributeSource.builtin:
        column = features.c.get(attribute.column)
        if column is None:
            raise LookupError(f"the features relation has no column {attribute.column!r} for '{attribute.name}'")
        return column
    document = features.c.get("attributes")
    if document is None:
        raise LookupError("the features relation has no 'attributes' column for custom attributes")
    item = sa.type_coerce(document, JSONB())[sa.literal(attribute.name, sa.Text())]
    is_kind = sa.func.jsonb_typeof(item) == _JSON_KIND[attribute.type]
    if attribute.type in (AttributeType.number, AttributeType.integer):
        return sa.case((is_kind, sa.cast(item.astext, sa.Numeric())), else_=sa.null())
    if attribute.type is AttributeType.string:
        return sa.case((is_kind, item.astext), else_=sa.null())
    if attribute.type is AttributeType.boolean:
        return sa.case((is_kind, sa.cast(item.astext, sa.Boolean())), else_=sa.null())
    if attribute.type is AttributeType.date:
        iso = sa.and_(is_kind, item.astext.regexp_match(ISO_DATE.pattern))
        return sa.case((iso, sa.cast(item.astext, sa.Date())), else_=sa.null())
    return sa.type_coerce(sa.case((is_kind, item), else_=sa.null()), JSONB())  # string_set: a JSON array


def _predicate(attribute: Attribute, op: Operator, value: ColumnElement[Any], operand: Any) -> ColumnElement[bool]:
    if op is Operator.is_null:
        return value.is_(None) if operand else value.is_not(None)
    if attribute.type is AttributeType.string_set:
        return _set_predicate(attribute, op, value, operand)
    sql_type = SQL_TYPES[attribute.type]
    if op is Operator.eq:
        return value == _param(operand, sql_type)
    if op is Operator.ne:
        return value != _param(operand, sql_type)
    if op is Operator.lt:
        return value < _param(operand, sql_type)
    if op is Operator.lte:
        return value <= _param(operand, sql_type)
    if op is Operator.gt:
        return value > _param(operand, sql_type)
    if op is Operator.gte:
        return value >= _param(operand, sql_type)
    if op is Operator.between:
        low, high = operand
        return value.between(_param(low, sql_type), _param(high, sql_type))
    if op is Operator.in_:
        return value == sa.any_(_param(list(operand), ARRAY(sql_type)))
    if op is Operator.not_in:
        return value != sa.all_(_param(list(operand), ARRAY(sql_type)))
    raise AssertionError(f"unhandled operator {op} for {attribute.type}")


def _set_predicate(attribute: Attribute, op: Operator, value: ColumnElement[Any], operand: Any) -> ColumnElement[bool]:
    wanted = [operand] if op is Operator.contains else list(operand)
    array = _param(wanted, ARRAY(sa.Text()))
    if attribute.source is AttributeSource.custom:  # a JSONB array of strings
        if op is Operator.contains:
            return value.has_all(array)
        overlap = value.has_any(array)
    else:  # a text[] column
        if op is Operator.contains:
            return value.contains(array)
        overlap = value.overlap(array)
    return overlap if op is Operator.contains_any else sa.not_(overlap)


def _param(value: Any, sql_type: TypeEngine[Any]) -> ColumnElement[Any]:
    """A bound parameter of a SQL type: how every value of a document reaches SQL."""
    return sa.literal(value, sql_type)


def _typed(value: Any, sql_type: TypeEngine[Any]) -> ColumnElement[Any]:
    """A bound parameter cast to its SQL type (a typed NULL for None), for select lists and variadic functions."""
    if value is None:
        return sa.cast(sa.null(), sql_type)
    return sa.cast(sa.literal(value, sql_type), sql_type)
