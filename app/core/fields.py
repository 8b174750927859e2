"""Decimal field types shared by request and response bodies: money and multipliers are decimal strings with a
stated pattern, the same way in and out (exact: never a JSON number, which many clients read as a float)."""

import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, WithJsonSchema
from pydantic_core import PydanticCustomError


def decimal_string(*, digits: int, places: int, signed: bool, description: str, example: str) -> Any:
    """A Decimal read from a string of at most `digits` integer digits and `places` decimals (a Decimal is also
    taken, from code), written as a string with exactly `places` decimals."""
    pattern = rf"^{'-?' if signed else ''}[0-9]{{1,{digits}}}(\.[0-9]{{1,{places}}})?$"
    matches, quantum = re.compile(pattern).fullmatch, Decimal(1).scaleb(-places)
    message = (f'must be a decimal string such as "{example}": up to {digits} digits and {places} decimals'
               + ("" if signed else ", not negative"))

    def parse(value: Any) -> Any:
        if isinstance(value, Decimal) or (isinstance(value, str) and matches(value)):
            return Decimal(value)
        raise PydanticCustomError("decimal_string", message)

    return Annotated[Decimal, BeforeValidator(parse),
                     PlainSerializer(lambda value: format(value.quantize(quantum), "f"), return_type=str,
                                     when_used="json"),
                     WithJsonSchema({"type": "string", "format": "decimal", "pattern": pattern,
                                     "description": description, "examples": [example]})]


Money = decimal_string(digits=16, places=2, signed=True, example="1234.50",
                       description="An amount in the service currency: a decimal string, 2 decimals at most.")
NonNegativeMoney = decimal_string(digits=16, places=2, signed=False, example="1234.50",
                                  description="An amount in the service currency, not negative: a decimal string, "
                                              "2 decimals at most.")
Multiplier = decimal_string(digits=3, places=4, signed=False, example="1.25",
                            description="A ranking multiplier in (0, 100]: a decimal string, 4 decimals at most; "
                                        "1 is neutral.")
