"""Product quota request and response bodies: the caps an admin sets, and what each period has sold."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from typing_extensions import TypeAliasType

from app.core.fields import Money, PositiveMoney
from app.core.strict import Integer, at_least_one_of

QuotaPeriod = TypeAliasType(
    "QuotaPeriod",
    Annotated[
        Literal["month", "quarter", "year", "lifetime"],
        Field(description="The period a cap counts over: calendar month, quarter or year (UTC), or lifetime."),
    ],
)


class QuotaIn(BaseModel):
    """A product's caps: a count of conversions and/or a total amount converted, per period."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            **at_least_one_of("cap_count", "cap_amount"),
            "examples": [{"period": "month", "cap_count": 1000, "cap_amount": None}],
        },
    )

    period: QuotaPeriod
    cap_count: Integer(1) | None = Field(None, description="At most this many conversions per period.")
    cap_amount: PositiveMoney | None = Field(
        None,
        description="At most this amount converted per period (a convert event's amount, a new holding's balance).",
    )

    @model_validator(mode="after")
    def a_cap(self) -> "QuotaIn":
        if self.cap_count is None and self.cap_amount is None:
            raise ValueError("give cap_count, cap_amount or both")
        return self


class QuotaRead(QuotaIn):
    """A product's caps, with their ETag (If-Match on PUT and DELETE)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"product_code": "premium_card", "period": "month", "cap_count": 1000, "cap_amount": None}]
        }
    )

    product_code: str


class QuotaUsage(BaseModel):
    """A quota's usage in the current period."""

    product_code: str
    period: QuotaPeriod
    period_start: datetime = Field(description="When the current period opened (UTC).")
    period_end: datetime | None = Field(description="When the next one opens; null for a lifetime quota.")
    cap_count: int | None
    cap_amount: Money | None
    sold_count: int = Field(description="Conversions counted in the period.")
    sold_amount: Money = Field(description="The amount they converted.")
    remaining_count: int | None = Field(description="What the count cap leaves; null without one.")
    remaining_amount: Money | None = Field(description="What the amount cap leaves; null without one.")
    over_cap_count: int = Field(description="Conversions recorded past a cap in the period, not counted.")
    sold_out: bool = Field(description="A cap is reached: the product is not recommended until the period ends.")
    sold_out_at: datetime | None
