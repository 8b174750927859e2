"""Referral bodies: a referral event, its moves (referred -> onboarded -> active) and the referral read."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from typing_extensions import TypeAliasType

from app.core.strict import Timestamp, exactly_one_of
from app.customers.schemas import ExternalId, _not_in_future
from app.engagement.schemas.common import EventId

ReferralMove = TypeAliasType(
    "ReferralMove",
    Annotated[Literal["onboarded", "active"], Field(description="onboarded (from referred), active (converted).")],
)
ReferralStatus = TypeAliasType(
    "ReferralStatus",
    Annotated[
        Literal["referred", "onboarded", "active"],
        Field(description="referred -> onboarded (the referee became a customer) -> active (converted)."),
    ],
)
ReferralCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{3,39}$")]


class ReferralIn(BaseModel):
    """A referral: the referee is another customer (`referee_customer_id`) or a pending `referral_code`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            **exactly_one_of("referee_customer_id", "referral_code"),
            "examples": [
                {
                    "event_id": "ref-000001",
                    "referrer_customer_id": "C00000042",
                    "referral_code": "FRIEND-7QX2",
                    "referred_at": "2026-11-22T08:14:03Z",
                }
            ],
        },
    )

    event_id: EventId = Field(description="Your id of the referral; a retry changes nothing.")
    referrer_customer_id: ExternalId
    referee_customer_id: ExternalId | None = None
    referral_code: ReferralCode | None = None
    referred_at: Timestamp

    @field_validator("referred_at")
    @classmethod
    def referred_not_in_future(cls, value: datetime) -> datetime:
        return _not_in_future(value)

    @model_validator(mode="after")
    def one_referee(self):
        if (self.referee_customer_id is None) == (self.referral_code is None):
            raise ValueError("name the referee by referee_customer_id or by referral_code, one of them")
        return self


class ReferralMoveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"to_status": "onboarded", "referee_customer_id": "C00000043"}, {"to_status": "active"}]
        },
    )

    to_status: ReferralMove
    referee_customer_id: ExternalId | None = Field(
        None, description="The referee, when the referral named a code: the customer the code brought in."
    )
    at: Timestamp | None = Field(None, description="When; default now.")

    @field_validator("at")
    @classmethod
    def at_not_in_future(cls, value: datetime | None) -> datetime | None:
        return _not_in_future(value)


class ReferralRead(BaseModel):
    id: int
    event_id: str
    referrer_customer_id: str
    referee_customer_id: str | None
    referral_code: str | None
    status: ReferralStatus
    referred_at: datetime
    onboarded_at: datetime | None
    activated_at: datetime | None
