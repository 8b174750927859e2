"""The catalogue of webhook event types: the one place an event type is named, described and given its payload
schema (served at GET /v1/webhooks/event-types). A domain that emits a new event adds it here first; `emit`
refuses a type that is not listed and a payload that does not fit its schema.

Payloads carry ids and states, never personal values (names, contact data, balances, free text): a receiver that
needs more reads it from the API with its own key."""

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.core.fields import Money


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TierChanged(_Payload):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C0001042",
                    "policy_key": "wealth",
                    "from_tier": "gold",
                    "to_tier": "wealth",
                    "reason": "rules",
                    "at": "2026-12-01T02:00:00Z",
                }
            ]
        },
    )

    customer_id: str = Field(description="The bank's external id of the customer.")
    policy_key: str = Field(description="The tier policy's key.")
    from_tier: str | None = Field(description="The tier before (null: the customer had none).")
    to_tier: str = Field(description="The tier now.")
    reason: str = Field(description="rules, grace_elapsed, override or override_expired.")
    at: datetime


class TierAtRisk(_Payload):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C0001042",
                    "policy_key": "wealth",
                    "tier": "wealth",
                    "downgrade_to": "gold",
                    "downgrade_on": "2027-01-15",
                }
            ]
        },
    )

    customer_id: str = Field(description="The bank's external id of the customer.")
    policy_key: str = Field(description="The tier policy's key.")
    tier: str = Field(description="The tier the customer still has.")
    downgrade_to: str = Field(description="The tier the customer qualifies for now.")
    downgrade_on: date = Field(description="When the downgrade applies unless the customer qualifies again.")


class BenefitUsed(_Payload):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C0001042",
                    "benefit_code": "airport-lounge",
                    "policy_key": "wealth",
                    "tier": "wealth",
                    "used_at": "2026-12-03T18:20:00Z",
                }
            ]
        },
    )

    customer_id: str = Field(description="The bank's external id of the customer.")
    benefit_code: str
    policy_key: str | None = Field(None, description="The key of the policy whose tier entitles the customer.")
    tier: str | None = Field(None, description="The tier that entitles the customer.")
    used_at: datetime


class ComplaintStatusChanged(_Payload):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "complaint_id": 881,
                    "customer_id": "C0001042",
                    "category": "fees",
                    "from_status": "in_progress",
                    "to_status": "resolved",
                    "at": "2026-12-02T10:31:00Z",
                }
            ]
        },
    )

    complaint_id: int
    customer_id: str = Field(description="The bank's external id of the customer.")
    category: str
    from_status: Literal["open", "in_progress", "resolved", "closed"] | None = Field(
        description="Null when the complaint was just opened."
    )
    to_status: Literal["open", "in_progress", "resolved", "closed"]
    at: datetime


class CommunityMembershipChanged(_Payload):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "community_key": "young-families",
                    "customer_id": "C0001042",
                    "from_state": "invited",
                    "to_state": "joined",
                    "channel": "mobile",
                    "at": "2026-12-03T18:20:00Z",
                }
            ]
        },
    )

    community_key: str
    customer_id: str = Field(description="The bank's external id of the customer.")
    from_state: Literal["invited", "joined", "left", "declined", "removed"] | None = Field(
        description="Null for a first invitation."
    )
    to_state: Literal["invited", "joined", "left", "declined", "removed"]
    channel: str
    at: datetime


class ActivityParticipationChanged(_Payload):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "activity_key": "salon_year_end",
                    "customer_id": "C0001042",
                    "from_state": "waitlisted",
                    "to_state": "accepted",
                    "at": "2026-12-03T18:20:00Z",
                }
            ]
        },
    )

    activity_key: str
    customer_id: str = Field(description="The bank's external id of the customer.")
    from_state: Literal["invited", "accepted", "waitlisted", "declined", "attended", "no_show"] | None = Field(
        description="Null for a first invitation."
    )
    to_state: Literal["invited", "accepted", "waitlisted", "declined", "attended", "no_show"]
    at: datetime


class ReferralStatusChanged(_Payload):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "referral_id": 17,
                    "referrer_customer_id": "C0001042",
                    "from_status": "onboarded",
                    "to_status": "active",
                    "at": "2026-12-03T18:20:00Z",
                }
            ]
        },
    )

    referral_id: int
    referrer_customer_id: str = Field(description="The bank's external id of the referrer.")
    from_status: Literal["referred", "onboarded", "active"] | None = Field(description="Null for a new referral.")
    to_status: Literal["referred", "onboarded", "active"]
    at: datetime


class ProductSoldOut(_Payload):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "product_code": "premium_card",
                    "period": "month",
                    "period_start": "2026-12-01T00:00:00Z",
                    "period_end": "2027-01-01T00:00:00Z",
                    "cap_count": 1000,
                    "cap_amount": None,
                    "sold_count": 1000,
                    "sold_amount": "0.00",
                    "at": "2026-12-06T07:30:00Z",
                }
            ]
        },
    )

    product_code: str
    period: Literal["month", "quarter", "year", "lifetime"]
    period_start: datetime = Field(description="The start of the period whose quota sold out (UTC).")
    period_end: datetime | None = Field(
        description="When the next period opens and the product is offered again; "
        "null for a lifetime quota (until its cap is raised)."
    )
    cap_count: int | None = Field(description="The cap on conversions, if any.")
    cap_amount: Money | None = Field(description="The cap on the amount converted, if any.")
    sold_count: int
    sold_amount: Money
    at: datetime


@dataclass(frozen=True)
class EventType:
    name: str
    description: str
    payload: type[BaseModel]


EVENT_TYPES: dict[str, EventType] = {
    event.name: event
    for event in (
        EventType(
            "tier.upgraded", "A customer moved to a higher tier of a policy (at once when they qualify).", TierChanged
        ),
        EventType(
            "tier.downgraded",
            "A customer moved to a lower tier of a policy (after the grace period, or when an override ended).",
            TierChanged,
        ),
        EventType(
            "tier.at_risk",
            "A customer no longer qualifies for their tier and will be downgraded on a date unless they qualify again.",
            TierAtRisk,
        ),
        EventType("benefit.used", "A customer used a benefit of their tier.", BenefitUsed),
        EventType(
            "complaint.status_changed",
            "A complaint was opened (from_status null) or moved to another status.",
            ComplaintStatusChanged,
        ),
        EventType(
            "community.membership_changed",
            "A customer was invited to a community, joined, declined, left or was removed.",
            CommunityMembershipChanged,
        ),
        EventType(
            "activity.participation_changed",
            "A customer was invited to an activity, accepted (or was waitlisted, or promoted from the waiting list), "
            "declined, attended or did not show.",
            ActivityParticipationChanged,
        ),
        EventType(
            "referral.status_changed",
            "A referral was recorded, or its referee onboarded or became active (converted).",
            ReferralStatusChanged,
        ),
        EventType(
            "product.sold_out",
            "A product's quota reached its cap (count or amount) for the period: it is no longer recommended until "
            "the next period opens or the cap is raised.",
            ProductSoldOut,
        ),
    )
}
