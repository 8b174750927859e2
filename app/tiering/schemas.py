"""Tier policy request and response bodies: policies, versions and their tiers, what-if and simulation results."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema, model_validator
from typing_extensions import TypeAliasType

from app.core.i18n import LanguageTag
from app.core.strict import ATTRIBUTE_VALUE_SCHEMA, INT_MAX, Description, Integer, Text, at_least_one_of
from app.rules.schema import Condition, ConditionResult

POLICY_KEY_PATTERN = r"^[a-z][a-z0-9_\-]{1,39}$"
TIER_CODE_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"
PolicyKey = Annotated[str, StringConstraints(pattern=POLICY_KEY_PATTERN)]
TierCode = Annotated[str, StringConstraints(pattern=TIER_CODE_PATTERN)]
Label = Text(100)
Name = Text(200)
GraceDays = Integer(0, 730)
VersionStatus = TypeAliasType(
    "VersionStatus",
    Annotated[
        Literal["draft", "active", "retired"],
        Field(description="A policy version's state: one active version per policy; drafts can be edited."),
    ],
)
PolicyChangeAction = TypeAliasType(
    "PolicyChangeAction",
    Annotated[
        Literal["create", "add_version", "edit", "activate", "retire", "rollback"],
        Field(description="What a change did to a policy."),
    ],
)
TransitionDirection = TypeAliasType(
    "TransitionDirection",
    Annotated[
        Literal["initial", "upgrade", "downgrade", "lateral"],
        Field(description="initial: a first assignment; lateral: another tier of the same rank."),
    ],
)
TransitionReason = TypeAliasType(
    "TransitionReason",
    Annotated[
        Literal["rules", "grace_elapsed", "override", "override_removed", "override_expired"],
        Field(
            description="rules: the data changed; grace_elapsed: a pending downgrade applied; the others: a "
            "relationship manager's override was set, removed or ran out."
        ),
    ],
)
TierRunStatus = TypeAliasType(
    "TierRunStatus",
    Annotated[Literal["running", "succeeded", "failed"], Field(description="A batch tier run's state.")],
)
CareOccasion = TypeAliasType(
    "CareOccasion",
    Annotated[
        Literal["birthday", "anniversary"], Field(description="birthday, or the anniversary of becoming a customer.")
    ],
)
MAX_TIERS = 20

TIERS_DOC = (
    "Ordered tiers, at most 20; the first whose condition matches wins. Only the last may be "
    'unconditional ({"always": true}); a tier after an unconditional one could never match.'
)
GRACE_DOC = (
    "Days a customer must qualify lower, without a break, before a downgrade applies (0..730); "
    "upgrades apply at once. One number per policy version."
)

WEALTH_TIERS = [
    {
        "code": "private",
        "label": "Private Banking",
        "rank": 40,
        "condition": {"attr": "aum_avg_3m", "op": "gte", "value": 10000000},
    },
    {
        "code": "wealth",
        "label": "Wealth",
        "rank": 30,
        "condition": {"attr": "aum_avg_3m", "op": "gte", "value": 500000},
    },
    {
        "code": "gold",
        "label": "Gold",
        "rank": 20,
        "condition": {
            "all": [
                {"attr": "aum_avg_3m", "op": "gte", "value": 50000},
                {"attr": "tenure_months", "op": "gte", "value": 6},
            ]
        },
    },
    {"code": "mass", "label": "Everyday", "rank": 10, "condition": {"always": True}},
]


LocalizedLabels = Annotated[
    dict[LanguageTag, Label],
    Field(
        max_length=20,
        description="The label in other languages, by language tag (`en`, `zh-CN`): reads in a customer's language "
        "(Accept-Language) take it from here, falling back zh-CN -> zh -> the default language -> `label`.",
        examples=[{"en": "Wealth", "zh-CN": "财富客户"}],
        json_schema_extra={"additionalProperties": False},  # keys are language tags (patternProperties) only
    ),
]


class Tier(BaseModel):
    """One tier of a version: customers matching `condition` (and no earlier tier) land here."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": WEALTH_TIERS[1:2]})

    code: TierCode = Field(description="Stable tier code, unique within the version: ^[a-z][a-z0-9_]{0,39}$.")
    label: Label = Field(description="Name shown to customers and staff.")
    labels: LocalizedLabels = {}
    rank: Integer(0, 10000) = Field(
        description="Higher is a better tier; compares tiers for upgrades and downgrades, also across versions."
    )
    condition: Condition = Field(description="Who qualifies, in the rule language (GET /v1/attributes).")


Tiers = Annotated[list[Tier], Field(min_length=1, max_length=MAX_TIERS, description=TIERS_DOC)]


class TierPolicyCreate(BaseModel):
    """A new policy and its first version, created as draft version 1."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "policy_key": "wealth",
                    "name": "Wealth tiers",
                    "description": "Relationship tiers by 3-month average AUM.",
                    "tiers": WEALTH_TIERS,
                    "downgrade_grace_days": 90,
                    "version_description": "Thresholds approved by the retail committee, March 2026.",
                }
            ]
        },
    )

    policy_key: PolicyKey = Field(description="Stable policy key, lowercase: e.g. wealth, lifecycle, loyalty, needs.")
    name: Name
    description: Description = ""
    tiers: Tiers
    downgrade_grace_days: GraceDays = Field(0, description=GRACE_DOC)
    version_description: Description = Field("", description="What version 1 is about.")


class TierPolicyVersionCreate(BaseModel):
    """A new draft version: give the tiers, or copy them from an existing version with `copy_from`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            **at_least_one_of("tiers", "copy_from"),
            "examples": [
                {
                    "tiers": WEALTH_TIERS,
                    "downgrade_grace_days": 120,
                    "description": "Longer grace after customer feedback.",
                },
                {"copy_from": 1, "description": "Start from version 1 and edit the draft."},
            ],
        },
    )

    tiers: Tiers | None = None
    downgrade_grace_days: GraceDays | None = Field(None, description=GRACE_DOC + " Default: copied, else 0.")
    description: Description = ""
    copy_from: Integer(1, INT_MAX) | None = Field(
        None,
        description="Copy tiers and grace from this version number; `tiers` and `downgrade_grace_days` given here win.",
    )

    @model_validator(mode="after")
    def tiers_or_copy(self) -> "TierPolicyVersionCreate":
        if self.tiers is None and self.copy_from is None:
            raise ValueError("give tiers, or copy_from with the version number to copy")
        return self


class TierPolicyVersionUpdate(BaseModel):
    """The whole content of a draft version (PUT replaces it); send If-Match with the version's ETag."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"tiers": WEALTH_TIERS, "downgrade_grace_days": 60, "description": "Shorter grace."},
            ]
        },
    )

    tiers: Tiers
    downgrade_grace_days: GraceDays = Field(0, description=GRACE_DOC)
    description: Description = ""


class TierRead(BaseModel):
    code: str
    label: str
    labels: dict[str, str] = Field({}, description="The label by language tag.")
    rank: int
    condition: Condition


class TierPolicyVersionRead(BaseModel):
    """A full version, with its tiers."""

    policy_key: str
    version: int
    status: VersionStatus
    tiers: list[TierRead]
    downgrade_grace_days: int = Field(description=GRACE_DOC)
    description: str
    created_by: str = Field(description="The name of the API key that created the version.")
    created_at: datetime
    updated_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


class TierPolicyVersionSummary(BaseModel):
    version: int
    status: VersionStatus
    tier_codes: list[str]
    downgrade_grace_days: int
    description: str
    created_by: str
    created_at: datetime
    activated_at: datetime | None
    retired_at: datetime | None


class TierPolicySummary(BaseModel):
    policy_key: str
    name: str
    description: str
    active_version: int | None = Field(description="The active version's number; null when none is active.")
    latest_version: int
    created_at: datetime


class TierPolicyRead(TierPolicySummary):
    versions: list[TierPolicyVersionSummary]


class TierPolicyChangeRead(BaseModel):
    id: int = Field(description="The change's id, increasing: the order of the trail.")
    version: int | None
    actor: str = Field(description="The name of the API key that made the change.")
    at: datetime
    action: PolicyChangeAction
    detail: dict[str, Any] = Field(
        description="What changed, by action: e.g. the version's tiers and grace "
        "for create, add_version and edit; the versions for activate."
    )


class WhatIfRequest(BaseModel):
    """Attribute values of a hypothetical customer; attributes not given take the no-data value (0, [], null)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"attributes": {"aum_avg_3m": 620000, "tenure_months": 40, "held_categories": ["deposit", "fund"]}},
            ]
        },
    )

    attributes: Annotated[
        dict[str, Any], WithJsonSchema({"type": "object", "additionalProperties": ATTRIBUTE_VALUE_SCHEMA})
    ] = Field(
        description="{attribute name: value}, as GET /v1/attributes types them: "
        "numbers, strings, booleans, dates (YYYY-MM-DD), lists of strings."
    )


class TierExplanation(BaseModel):
    tier: str
    matched: bool
    conditions: list[ConditionResult] = Field(description="Each comparison of the tier's condition, as evaluated.")


class WhatIfResult(BaseModel):
    tier: str | None = Field(description="The tier the values land in; null when no tier matches.")
    label: str | None
    rank: int | None
    explanation: list[TierExplanation] = Field(description="Each tier in order, up to and including the match.")


class TierShare(BaseModel):
    tier: str | None = Field(description="A tier code; null for customers no tier matches.")
    customers: int
    share: float = Field(description="customers / population, rounded to 4 places.")


class TierMigration(BaseModel):
    from_: str | None = Field(
        alias="from", serialization_alias="from", description="The tier under the active version; null without one."
    )
    to: str | None
    customers: int

    model_config = ConfigDict(populate_by_name=True)


class SimulationResult(BaseModel):
    population: int
    distribution: list[TierShare]
    against_version: int | None = Field(description="The active version compared against; null when none.")
    migration: list[TierMigration]
    upgrades: int = Field(description="Customers whose tier rank would rise (both sides have a tier).")
    downgrades: int = Field(description="Customers whose tier rank would fall (both sides have a tier).")
    unchanged: int = Field(description="Customers whose tier rank stays the same (both sides have a tier).")
