"""Decimal field types shared by request and response bodies: money and multipliers are decimal strings with a
stated pattern, the same way in and out (exact: never a JSON number, which many clients read as a float)."""

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError


def decimal_string(
    *, digits: int, places: int, sign: str, description: str, example: str, limit: int | None = None
) -> Any:
    """A Decimal read from a string of at most `digits` integer digits and `places` decimals (a Decimal is also
    taken, from code), written as a string with exactly `places` decimals. sign: "any", "not negative" or
    "positive" (the pattern then refuses every spelling of zero). limit, a power of ten: the magnitude is at most
    this, stated by the pattern itself (no leading zeros then), so what is published is the bound enforced."""
    fraction = rf"(\.[0-9]{{1,{places}}})?"
    if limit is None:
        nonzero = [rf"[1-9][0-9]{{0,{digits - 1}}}{fraction}"]  # an integer part of 1 or more
        number = rf"[0-9]{{1,{digits}}}{fraction}"
    else:
        below = len(str(limit)) - 1
        if str(limit) != "1" + "0" * below or below > digits:
            raise ValueError("limit must be a power of ten that fits the digits")
        # 1..limit-1 with any fraction, or limit itself with zero decimals only
        nonzero = ([rf"[1-9][0-9]{{0,{below - 1}}}{fraction}"] if below else []) + [rf"{limit}(\.0{{1,{places}}})?"]
        number = "(" + "|".join([rf"0{fraction}", *nonzero]) + ")"
    fractions = "|".join(rf"{'0' * k}[1-9][0-9]{{0,{places - 1 - k}}}" for k in range(places))  # 0.<not all 0>
    pattern = {
        "any": rf"^-?{number}$",
        "not negative": rf"^{number}$",
        "positive": "^(" + "|".join([*nonzero, rf"0\.({fractions})"]) + ")$",
    }[sign]
    matches, quantum = re.compile(pattern).fullmatch, Decimal(1).scaleb(-places)
    message = (
        f'must be a decimal string such as "{example}": up to {digits} digits and {places} decimals'
        + ("" if sign == "any" else f", {sign}")
        + (", no leading zeros" if sign == "positive" else "")
    )

    def parse(value: Any) -> Any:
        if isinstance(value, Decimal) or (isinstance(value, str) and matches(value)):
            return Decimal(value)
        raise PydanticCustomError("decimal_string", message)

    return Annotated[
        Decimal,
        BeforeValidator(parse),
        PlainSerializer(lambda value: format(value.quantize(quantum), "f"), return_type=str, when_used="json"),
        WithJsonSchema(
            {
                "type": "string",
                "format": "decimal",
                "pattern": pattern,
                "description": description,
                "examples": [example],
            }
        ),
    ]


Money = decimal_string(
    digits=16,
    places=2,
    sign="any",
    example="1234.50",
    description="An amount in the service currency: a decimal string, 2 decimals at most.",
)
MoneyTotal = decimal_string(
    digits=30,
    places=2,
    sign="any",
    example="1234567.50",
    description="A total or average of amounts in the service currency (over customers or holdings, so beyond one "
    "amount's 16 digits): a decimal string, 2 decimals at most.",
)
NonNegativeMoney = decimal_string(
    digits=16,
    places=2,
    sign="not negative",
    example="1234.50",
    description="An amount in the service currency, not negative: a decimal string, 2 decimals at most.",
)
PositiveMoney = decimal_string(
    digits=16,
    places=2,
    sign="positive",
    example="54.90",
    description="An amount in the service currency, greater than 0: a decimal string, 2 decimals at most.",
)
Multiplier = decimal_string(
    digits=3,
    places=4,
    sign="positive",
    example="1.25",
    description="A ranking multiplier in (0, 100]: a decimal string, 4 decimals at most; 1 is neutral.",
    limit=100,
)
