"""Request values parsed strictly and bounded to what a bank can mean, stated once for every body and parameter.

Pydantic's lax mode reads 123 as 1970-01-01T00:02:03Z, "yes" as true and "5.0" as 5; these types refuse that, and
publish in the OpenAPI document the constraint they enforce:
- dates and times: ISO 8601 text only, years EARLIEST_YEAR..LATEST_YEAR as written; times carry a timezone;
- booleans: JSON true or false in a body; the words true or false in a query;
- integers: JSON integers in a body (not "5", true or 5.5); digits in a path or query; within the column's type;
- decimals: a JSON number or a plain decimal string ("1250.50") that fits the NUMERIC column.
"""

import re
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BeforeValidator,
    Field,
    StrictBool,
    StringConstraints,
    WithJsonSchema,
)
from pydantic_core import PydanticCustomError

EARLIEST_YEAR, LATEST_YEAR = 1900, 2100
YEARS = f"years {EARLIEST_YEAR}..{LATEST_YEAR}"
YEAR_PATTERN = r"(19[0-9]{2}|20[0-9]{2}|2100)"  # EARLIEST_YEAR..LATEST_YEAR
LEAP_YEAR_PATTERN = r"(19(0[48]|[2468][048]|[13579][26])|20([02468][048]|[13579][26]))"  # 2000 yes, 1900/2100 no
_MONTH_DAY = r"((0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|(0[13-9]|1[0-2])-(29|30)|(0[13578]|1[02])-31)"
DAY = rf"({YEAR_PATTERN}-{_MONTH_DAY}|{LEAP_YEAR_PATTERN}-02-29)"
"""A calendar date that exists, exactly: what date.fromisoformat accepts within the years (no 02-30, no 1900-02-29)."""
DAY_PATTERN = rf"^{DAY}$"
TIME_PATTERN = (
    rf"^{DAY}[Tt]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]{{1,6}})?)?"
    r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)  # RFC 3339, with its timezone; every value it matches parses (hours 00..23, no leap second)
SMALLINT_MAX, INT_MAX, BIGINT_MAX = 2**15 - 1, 2**31 - 1, 2**63 - 1
NUMBER_LIMIT = 10**16
"""Numbers typed at run time (custom attributes) are finite and below this in size, as money is (NUMERIC(18, 2))."""
_DIGITS = re.compile(r"-?[0-9]{1,19}")


def _text_matching(pattern: str, kind: str, example: str):
    compiled = re.compile(pattern)

    def check(value: Any) -> Any:
        if isinstance(value, date):  # already parsed (a default, or a value built by the service itself)
            return value
        if not isinstance(value, str) or not compiled.match(value):
            raise PydanticCustomError(
                kind.replace("-", "") + "_text", f"must be an ISO {kind} written as text, {YEARS}, e.g. {example}"
            )
        return value

    return check


def _in_years(value: date) -> date:
    if not EARLIEST_YEAR <= value.year <= LATEST_YEAR:
        raise PydanticCustomError("year_out_of_range", f"must be within {YEARS}")
    return value


Timestamp = Annotated[
    AwareDatetime,
    BeforeValidator(_text_matching(TIME_PATTERN, "date-time", "2026-11-22T08:14:03Z")),
    AfterValidator(_in_years),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "pattern": TIME_PATTERN,
            "description": f"ISO 8601 with a timezone, {YEARS}.",
        }
    ),
]
"""A moment: an ISO 8601 date-time with a timezone (Z or an offset), years 1900..2100."""

Day = Annotated[
    date,
    BeforeValidator(_text_matching(DAY_PATTERN, "date", "2026-11-22")),
    AfterValidator(_in_years),
    WithJsonSchema(
        {"type": "string", "format": "date", "pattern": DAY_PATTERN, "description": f"YYYY-MM-DD, {YEARS}."}
    ),
]
"""A calendar day: YYYY-MM-DD, years 1900..2100."""


def is_iso_day(value: Any) -> bool:
    """Whether a JSON value is a Day (for values typed at run time, such as custom attributes)."""
    if not isinstance(value, str) or not re.match(DAY_PATTERN, value):
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


def fits_bigint(value: int) -> bool:
    return -BIGINT_MAX - 1 <= value <= BIGINT_MAX


def year_in_range(moment: date | datetime) -> bool:
    return EARLIEST_YEAR <= moment.year <= LATEST_YEAR


Boolean = StrictBool
"""A body's boolean: JSON true or false only."""


def _true_or_false(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return value == "true"
    raise PydanticCustomError("bool_word", "must be true or false")


QueryBoolean = Annotated[bool, BeforeValidator(_true_or_false)]
"""A query parameter's boolean: the word true or false (not yes, on, 1 or t)."""


def _json_integer(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)  # 5.0 is the integer 5 in JSON (and JSON Schema)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise PydanticCustomError("int_json", "must be a JSON integer (not a string, a boolean or a fraction)")


def _in_doubles(bound: int) -> int:
    """The bound itself up to 2**53, past it the bound with one significant digit, toward zero (bigint's 2**63 - 1 is
    9 * 10**18). A JSON number past 2**53 is read as a double by many validators and generators (RFC 8259 section
    6) and written back as its shortest decimal: 2**63 - 1 as a double is 2**63, past bigint (schemathesis sent
    9223372036854776000 as within `maximum: 9223372036854775807`), and the double 2**63 - 1024 is written
    9223372036854775000, past itself (it sent that as within `maximum: 9223372036854774784`). 9 * 10**18 is a
    double written exactly, and every double below it is written below it (within half of its 1,024 spacing)."""
    if abs(bound) <= 2**53:
        return bound
    step = 10 ** (len(str(abs(bound))) - 1)
    return (abs(bound) // step) * step * (1 if bound > 0 else -1)


def Integer(ge: int = -BIGINT_MAX - 1, le: int = BIGINT_MAX, **field: Any) -> Any:  # noqa: N802 (a type factory)
    """A body's integer: a JSON integer (not "5", true or 5.5) within [ge, le] (default: bigint), the bounds those
    a double holds and writes back within them (`_in_doubles`: bigint's range is +-9 * 10**18 in a body)."""
    low, high = _in_doubles(ge), _in_doubles(le)
    return Annotated[int, Field(ge=low, le=high, **field), BeforeValidator(_json_integer)]


def _digits(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and _DIGITS.fullmatch(value):
        return int(value)
    raise PydanticCustomError("int_digits", "must be an integer written in digits")


def ParamInteger(ge: int = -BIGINT_MAX - 1, le: int = BIGINT_MAX) -> Any:  # noqa: N802 (a type factory)
    """A path or query integer: digits (not 5.0, +5 or 1_000) within [ge, le] (default: bigint)."""
    return Annotated[int, Field(ge=ge, le=le), BeforeValidator(_digits)]


def _number_edges(places: int, bounds: dict[str, Decimal]) -> dict[str, float]:
    """The JSON number form's bounds for a decimal whose numbers are rounded to `places` (half away from zero) before
    its bounds are checked: each bound moved half a unit outwards, inclusive or not as the tie at that edge rounds
    (away from zero: in, at a positive lower or a negative upper edge; out, at the others)."""
    unit = Decimal(1).scaleb(-places)
    half = unit / 2
    low = bounds["ge"] if "ge" in bounds else bounds["gt"] + unit
    high = bounds["le"] if "le" in bounds else bounds["lt"] - unit
    return {
        "minimum" if low > 0 else "exclusiveMinimum": float(low - half),
        "exclusiveMaximum" if high >= 0 else "maximum": float(high + half),
    }


def Numeric(
    digits: int,
    places: int,
    *,
    ge: Decimal | None = None,
    gt: Decimal | None = None,  # noqa: N802
    le: Decimal | None = None,
    pattern: str | None = None,
) -> Any:
    """A decimal for a NUMERIC(digits, places) column: a plain decimal string ("1250.50") with at most `places`
    decimals, or a JSON number, which is rounded to `places` decimals (half away from zero, as Postgres rounds into
    the column: a binary float has no exact decimal places), within the column (below 10^(digits - places) in size)
    and [ge or gt, le] when given. The number form's published bounds are where rounding lands inside them.
    `pattern`: the strings allowed, when the bounds are narrower than the column's (so the string form states them
    as the number form does: a pattern the bounds refuse part of would publish values that are refused)."""
    column = Decimal(10) ** (digits - places)
    lower = {"ge": ge} if ge is not None else {"gt": gt if gt is not None else -column}
    upper = {"le": le} if le is not None else {"lt": column}
    sign = "-?" if (ge if ge is not None else lower["gt"]) < 0 else ""
    pattern = pattern or rf"^{sign}[0-9]{{1,{digits - places}}}(\.[0-9]{{1,{places}}})?$"
    compiled = re.compile(pattern)
    unit = Decimal(1).scaleb(-places)

    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
            raise PydanticCustomError("decimal_type", 'must be a number or a decimal string such as "1250.50"')
        if isinstance(value, str):
            if not compiled.match(value):
                raise PydanticCustomError("decimal_text", f"must be a decimal string matching {pattern}")
            return value
        number = Decimal(repr(value)) if isinstance(value, float) else Decimal(value)
        if not number.is_finite():
            return value  # refused by the field (allow_inf_nan=False)
        try:
            rounded = number.quantize(unit, rounding=ROUND_HALF_UP)
        except InvalidOperation:  # too large to hold `places` decimals: the column's bound refuses it
            return number
        return rounded.copy_abs() if rounded.is_zero() else rounded

    number_schema = {"type": "number", **_number_edges(places, {**lower, **upper})}
    return Annotated[
        Decimal,
        BeforeValidator(check),
        Field(max_digits=digits, decimal_places=places, allow_inf_nan=False, **lower, **upper),
        WithJsonSchema({"anyOf": [number_schema, {"type": "string", "pattern": pattern}]}),
    ]


# Rules across fields, published beside the properties (a `not`, which generators of typed clients leave alone, where
# an anyOf would turn the model into a union): the schema then refuses what the model validator refuses.
_NULL = {"type": "null"}
_SET = {"not": _NULL}


def at_least_one_of(*names: str) -> dict[str, Any]:
    """json_schema_extra of a body that needs one or more of `names` given, not null."""
    return {"not": {"properties": dict.fromkeys(names, _NULL)}}


def exactly_one_of(first: str, second: str, *, set_second: dict | None = None, unset_second: dict | None = None):
    """json_schema_extra of a body that needs exactly one of two fields given, not null (a field whose "given" is
    another value, such as `all: true`, says so by set_second and unset_second: its schema when given, and when not)."""
    given = {first: _SET, second: set_second or _SET}
    neither = {"properties": {first: _NULL, second: unset_second or _NULL}}
    return {"not": {"anyOf": [neither, {"required": [first, second], "properties": given}]}}


def both_or_neither(first: str, second: str, *, unset_first: dict | None = None, unset_second: dict | None = None):
    """json_schema_extra of a body whose two fields are given together or not at all (unset_*: a field's schema when
    it counts as not given, null by default; e.g. {"maxItems": 0} for an empty list)."""
    unset = {first: unset_first or _NULL, second: unset_second or _NULL}
    only = [
        {"required": [a], "properties": {a: {"not": unset[a]}, b: unset[b]}}
        for a, b in ((first, second), (second, first))
    ]
    return {"not": {"anyOf": only}}


NO_NUL_PATTERN = r"^[^\x00]*$"
"""A key or filter that is looked up in the database: any text but NUL (which Postgres text cannot store)."""

WHITESPACE = r"\t\n\x0b\x0c\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000\ufeff"
"""Whitespace spelt out for patterns: `\\s` is another set in Python, in pydantic-core's Rust regex and in the ECMA
regex of JSON Schema validators (U+0085, U+001C-U+001F, U+FEFF), so a published pattern would allow what the
server refuses."""

TEXT_PATTERN = rf"^[^\x00]*[^{WHITESPACE}\x00][^\x00]*$"
"""A name or a reason: some character other than whitespace, and no NUL (which Postgres text cannot store)."""


def Text(max_length: int) -> Any:  # noqa: N802 (a type factory)
    """A name, label or reason: checked as sent against what the spec publishes (TEXT_PATTERN, 1 to max_length
    characters), then stored without the whitespace around it. Stripping before the check (pydantic's
    strip_whitespace) would accept a text past maxLength that the published schema refuses."""
    sent = StringConstraints(min_length=1, max_length=max_length, pattern=TEXT_PATTERN)
    return Annotated[str, sent, AfterValidator(str.strip)]


Description = Annotated[str, Field(max_length=2000, pattern=NO_NUL_PATTERN)]
"""Free text an admin writes about a document (a policy, a version, a product): anything but NUL."""

ATTRIBUTE_VALUE_SCHEMA = {
    "anyOf": [
        {"type": "number"},
        {"type": "string", "pattern": NO_NUL_PATTERN},
        {"type": "boolean"},
        {"type": "array", "items": {"type": "string", "pattern": NO_NUL_PATTERN}},
        {"type": "null"},
    ]
}
"""A custom attribute's value as a body sends it (its declared type is checked against the catalogue)."""
