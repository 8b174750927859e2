"""Tier assignment bodies: a customer's tiers (one and in bulk), overrides, the change feed, tier runs and the care
calendar."""

from datetime import date, datetime
from datetime import date as date_
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from app.core.strict import NO_NUL_PATTERN, Boolean, QueryBoolean, Timestamp, exactly_one_of
from app.customers.schemas import ExternalId
from app.tiering.schemas import (
    CareOccasion,
    PolicyKey,
    TierExplanation,
    TierRunStatus,
    TransitionDirection,
    TransitionReason,
)


class TierOverrideRead(BaseModel):
    tier: str
    reason: str
    actor: str
    expires_at: datetime | None


class CustomerTier(BaseModel):
    """A customer's tier under one active policy."""

    policy_key: str = Field(description="The policy's key.")
    policy_version: int = Field(description="The version that decided the tier.")
    tier: str = Field(description="The tier the customer has (an unexpired override wins over the rules).")
    label: str = Field(description="The tier's label in the response's language (Content-Language).")
    rank: int
    since: datetime = Field(description="When the customer entered the tier the rules gave.")
    evaluated_at: datetime
    qualified_tier: str = Field(description="What the rules give today; lower than `tier` while in grace.")
    at_risk: bool = Field(
        description="Qualifies lower today: the downgrade applies on `downgrade_on` unless the "
        "customer qualifies again before then."
    )
    downgrade_to: str | None
    downgrade_on: date | None
    override: TierOverrideRead | None
    explanation: list[TierExplanation] | None = Field(
        description="The tiers tried in order, with each comparison's value, threshold and result, as evaluated; "
        "null when asked with explain=false."
    )


class CustomerTiers(BaseModel):
    """A customer's tier under every active policy, and why."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C00000042",
                    "tiers": [
                        {
                            "policy_key": "wealth",
                            "policy_version": 3,
                            "tier": "wealth",
                            "label": "Wealth",
                            "rank": 30,
                            "since": "2026-03-01T02:00:11Z",
                            "evaluated_at": "2026-11-22T08:14:05Z",
                            "qualified_tier": "wealth",
                            "at_risk": False,
                            "downgrade_to": None,
                            "downgrade_on": None,
                            "override": None,
                            "explanation": [
                                {
                                    "tier": "private",
                                    "matched": False,
                                    "conditions": [
                                        {
                                            "pointer": "/tiers/0/condition",
                                            "attribute": "aum_avg_3m",
                                            "operator": "gte",
                                            "threshold": 10000000,
                                            "value": "620000.00",
                                            "result": False,
                                        }
                                    ],
                                },
                                {
                                    "tier": "wealth",
                                    "matched": True,
                                    "conditions": [
                                        {
                                            "pointer": "/tiers/1/condition",
                                            "attribute": "aum_avg_3m",
                                            "operator": "gte",
                                            "threshold": 500000,
                                            "value": "620000.00",
                                            "result": True,
                                        }
                                    ],
                                },
                            ],
                        }
                    ],
                }
            ]
        }
    )

    customer_id: str
    tiers: list[CustomerTier]


PolicyKeys = Annotated[
    list[PolicyKey],
    Field(
        max_length=20,
        description="Only these policies (repeat the parameter for several); none: every policy. A policy the "
        "customer has no tier under is left out.",
    ),
]
EXPLAIN_TIERS_DOC = "false: leave out `explanation` (null), the bulk of the document; the app rarely needs it."


class CustomerTiersQuery(BaseModel):
    """The query parameters of GET .../tiers (one model for the route and the hot path; frozen, as the hot path
    shares one instance among the requests with the same query string)."""

    model_config = ConfigDict(frozen=True)

    policy_key: PolicyKeys = []
    explain: QueryBoolean = Field(True, description=EXPLAIN_TIERS_DOC)


MAX_BULK_CUSTOMERS = 1000


class CustomerTiersBulkRead(BaseModel):
    """Many customers' tiers in one call, for a backend that renders a list of customers."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"customer_ids": ["C00000042", "C00000043"], "policy_key": ["wealth"], "explain": False}]
        },
    )

    customer_ids: list[ExternalId] = Field(
        min_length=1,
        max_length=MAX_BULK_CUSTOMERS,
        description="The bank's customer ids, 1..1000; each distinct id is answered once, in the order first given.",
    )
    policy_key: PolicyKeys = []
    explain: Boolean = Field(False, description=EXPLAIN_TIERS_DOC)


class CustomerTiersItem(BaseModel):
    """One customer of a bulk read: the same tiers as GET /v1/customers/{customer_id}/tiers."""

    customer_id: str
    found: bool = Field(description="false: no such customer (or erased); `tiers` is then empty.")
    tiers: list[CustomerTier]


class CustomerTiersBulk(BaseModel):
    items: list[CustomerTiersItem] = Field(description="One item per distinct customer id asked for, in order.")


class TierOverridePut(BaseModel):
    """A relationship manager's decision to hold a customer in a tier."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "tier": "private",
                    "reason": "Inheritance transfer of 12M expected in January; approved by RM lead.",
                    "expires_at": "2027-03-31T23:59:59Z",
                }
            ]
        },
    )

    tier: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    reason: str = Field(min_length=3, max_length=1000, pattern=NO_NUL_PATTERN)
    expires_at: Timestamp | None = Field(None, description="When the override stops applying by itself.")


class TierTransitionRead(BaseModel):
    id: int = Field(description="The transition's stable id: de-duplicate on it when a page is read twice.")
    customer_id: str
    policy_key: str
    from_tier: str | None
    to_tier: str
    direction: TransitionDirection
    reason: TransitionReason
    at: datetime


class TierTransitionPage(BaseModel):
    items: list[TierTransitionRead]
    next_cursor: str | None = Field(description="Pass as `cursor` to continue; also when no new rows yet.")


class TierRunCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            **exactly_one_of("policy_key", "all", set_second={"const": True}, unset_second={"const": False}),
            "examples": [{"policy_key": "wealth"}, {"all": True}],
        },
    )

    policy_key: str | None = Field(
        None, max_length=40, pattern=NO_NUL_PATTERN, description="One policy's key; or set `all`."
    )
    all: Boolean = Field(False, description="Every active policy.")

    @model_validator(mode="after")
    def one_target(self) -> "TierRunCreate":
        if (self.policy_key is None) == (not self.all):
            raise ValueError("give either `policy_key` or `all: true`")
        return self


class TierRunRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    policy_key: str | None = Field(description="The policy run; null: every active policy.")
    status: TierRunStatus
    requested_by: str
    total: int
    processed: int
    upgrades: int
    downgrades: int
    started_at: datetime
    finished_at: datetime | None
    error: str | None


class CareEntry(BaseModel):
    """A birthday or customer anniversary coming up for a customer of a tier."""

    customer_id: str
    display_name: str | None
    tier: str
    occasion: CareOccasion
    date: date_ = Field(description="The next day of the occasion, within `days` of today.")
    years: int = Field(description="Age, or years as a customer, on that day.")
