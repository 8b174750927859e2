"""A rule document's values read as an attribute's type (thresholds, what-if input), and an attribute's values
said back as JSON (explanations)."""

import re
from datetime import date
from decimal import Decimal, InvalidOperation
from typing import Any

from app.core.errors import InvalidInput
from app.core.strict import YEARS, fits_bigint, year_in_range
from app.rules.attributes import Attribute, AttributeCatalog, AttributeType

ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def json_value(value: Any, type_: AttributeType) -> Any:
    """An attribute's value as JSON: Decimal -> str (int for integer attributes), date -> ISO, set -> list."""
    if value is None:
        return None
    if isinstance(value, Decimal):
        if type_ is AttributeType.integer and value == value.to_integral_value():
            return int(value)
        return format(value, "f")  # plain notation: "620000", never "6.2E+5"
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set | frozenset):
        return [json_value(v, AttributeType.string) for v in value]
    return value


def coerce_attribute_value(attribute: Attribute, raw: Any, pointer: str) -> Any:
    """A whole attribute value (what-if input) in its Python type."""
    if attribute.type is AttributeType.string_set:
        if not isinstance(raw, list | tuple | set | frozenset):
            raise InvalidInput(
                pointer, f"'{attribute.name}' is a set of strings; expected an array of strings, got {_kind(raw)}"
            )
        return sorted({coerce_scalar(attribute, AttributeType.string, v, f"{pointer}/{i}") for i, v in enumerate(raw)})
    return coerce_scalar(attribute, attribute.type, raw, pointer)


def coerce_scalar(attribute: Attribute, type_: AttributeType, raw: Any, pointer: str) -> Any:
    """One value in the Python type of `type_`, or InvalidInput at pointer saying what was expected."""

    def mismatch(expected: str) -> InvalidInput:
        return InvalidInput(
            pointer, f"'{attribute.name}' is a {attribute.type} attribute; expected {expected}, got {_kind(raw)}"
        )

    if type_ is AttributeType.number:
        if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
            raise mismatch("a number")
        try:
            number = raw if isinstance(raw, Decimal) else Decimal(str(raw))
        except InvalidOperation:
            raise mismatch("a number") from None
        if not number.is_finite():
            raise mismatch("a finite number")
        return number
    if type_ is AttributeType.integer:
        if isinstance(raw, bool) or not isinstance(raw, int | float | Decimal):
            raise mismatch("a whole number")
        if (
            isinstance(raw, float)
            and not raw.is_integer()
            or isinstance(raw, Decimal)
            and (not raw.is_finite() or raw != raw.to_integral_value())
        ):
            raise mismatch("a whole number")
        if not fits_bigint(int(raw)):
            raise mismatch("a whole number within bigint")
        return int(raw)
    if type_ is AttributeType.string:
        if not isinstance(raw, str):
            raise mismatch("a string")
        return raw
    if type_ is AttributeType.boolean:
        if not isinstance(raw, bool):
            raise mismatch("true or false")
        return raw
    if type_ is AttributeType.date:
        if isinstance(raw, date):
            return raw
        if not isinstance(raw, str) or not ISO_DATE.match(raw):
            raise mismatch("an ISO date (YYYY-MM-DD)")
        try:
            day = date.fromisoformat(raw)
        except ValueError:
            raise InvalidInput(pointer, f"{raw!r} is not a valid date") from None
        if not year_in_range(day):
            raise InvalidInput(pointer, f"{raw!r} is not within {YEARS}")
        return day
    raise AssertionError(f"no scalar coercion for {type_}")


def unknown_attribute(name: str, catalog: AttributeCatalog) -> str:
    close = catalog.suggest(name)
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    return f"unknown attribute '{name}'{hint} (GET /v1/attributes lists them)"


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float | Decimal):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}" if len(value) <= 40 else "a string"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
