"""Facts: an explanation's values recorded as JSON beside a decision (a tier assignment, an offer state) and read
back later, so that a stored decision is explained without evaluating it again."""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql import ColumnElement

from app.rules.attributes import AttributeType
from app.rules.compile import ExplainedLeaf

JSONB_ARGS_PER_CALL = 50  # jsonb_build_array takes at most 100 arguments


def fact_value(leaf: ExplainedLeaf) -> ColumnElement[Any]:
    """SQL for the customer's value of a leaf's attribute as recorded facts hold it: numbers as exact decimal
    strings (as app.rules.values.json_value writes a Decimal), every other type as JSON writes it."""
    value = leaf.value.element if isinstance(leaf.value, sa.Label) else leaf.value
    return sa.cast(value, sa.Text()) if leaf.attribute_type is AttributeType.number else value


def facts_expression(leaves: Sequence[ExplainedLeaf]) -> ColumnElement[Any]:
    """SQL for a JSON array [value, result, value, result, ...] of the leaves, to store beside a decision (numbers
    as exact decimal strings). `facts_mapping` turns a stored array back into what `explain_row` reads."""
    values: list[ColumnElement[Any]] = []
    for leaf in leaves:
        values += [fact_value(leaf), leaf.result.element if isinstance(leaf.result, sa.Label) else leaf.result]
    return json_array_expression(values)


def json_array_expression(values: Sequence[ColumnElement[Any]]) -> ColumnElement[Any]:
    """SQL for a JSON array of the values (jsonb_build_array, in calls of at most JSONB_ARGS_PER_CALL)."""
    if not values:
        return sa.cast(sa.literal("[]"), JSONB)
    parts = [
        sa.func.jsonb_build_array(*values[i : i + JSONB_ARGS_PER_CALL], type_=JSONB)
        for i in range(0, len(values), JSONB_ARGS_PER_CALL)
    ]
    result = parts[0]
    for part in parts[1:]:
        result = result.op("||", return_type=JSONB)(part)
    return result


def facts_mapping(leaves: Sequence[ExplainedLeaf], facts: Sequence[Any], offset: int = 0) -> dict[str, Any]:
    """The labelled values `explain_row` expects, from a stored facts array (leaves start at `offset`)."""
    row = {}
    for i, leaf in enumerate(leaves):
        row[leaf.value_key], row[leaf.result_key] = facts[offset + 2 * i], facts[offset + 2 * i + 1]
    return row
