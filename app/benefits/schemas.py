"""Benefit request and response bodies: the catalogue, a customer's benefits (in force, at risk, the next tier and
its gap), uses and the take-up report."""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema, field_validator
from typing_extensions import TypeAliasType

from app.core.fields import decimal_string
from app.core.strict import Boolean, Description, Integer, Text, Timestamp, both_or_neither
from app.rules.schema import Condition, Operator

BenefitKind = TypeAliasType(
    "BenefitKind",
    Annotated[
        Literal[
            "fee_waiver",
            "rate_discount",
            "points_multiplier",
            "service",
            "gift",
            "partner_offer",
            "exclusive_product",
        ],
        Field(
            description="What a benefit gives: a fee waiver, a rate discount, a points multiplier, a service "
            "(adviser, lounge, priority line), a gift, a partner offer or an exclusive product."
        ),
    ],
)
BenefitUnit = TypeAliasType(
    "BenefitUnit",
    Annotated[
        Literal["percent", "multiplier", "currency", "count", "none"],
        Field(description="The unit of `value`: percent (of a fee or rate), multiplier, currency, count, none."),
    ],
)
UsagePeriod = TypeAliasType(
    "UsagePeriod",
    Annotated[
        Literal["month", "quarter", "year"],
        Field(description="The calendar period (UTC) a usage limit counts over."),
    ],
)
BenefitChannel = TypeAliasType(
    "BenefitChannel",
    Annotated[
        Literal["mobile", "web", "branch", "rm", "partner"],
        Field(description="Where a benefit is taken: mobile, web, branch, rm (relationship manager), partner."),
    ],
)
GapClosable = TypeAliasType(
    "GapClosable",
    Annotated[
        Literal["by_customer", "with_time", "no"],
        Field(description="Who can close a condition: the customer, only time (tenure, age), or nobody."),
    ],
)

BenefitCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{1,39}$")]
PolicyKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{1,39}$")]
TierCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$")]
AppliesTo = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,39}$")]
Language = Annotated[str, StringConstraints(pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8}){0,2}$")]
BenefitValue = decimal_string(
    digits=14,
    places=4,
    sign="not negative",
    example="50",
    description="The benefit's value in its unit (a decimal string, 4 decimals at most).",
)


class BenefitText(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Text(200)
    description: Description = ""  # any text but NUL (Postgres text cannot store it)


Texts = Annotated[
    dict[Language, BenefitText],
    Field(
        min_length=1,
        max_length=20,
        description='Texts per language tag, e.g. {"en": {...}, "zh-CN": {...}}: the customer\'s view picks one by '
        "Accept-Language (English, then the first, when none matches).",
        json_schema_extra={"additionalProperties": False},  # keys are language tags, nothing else
    ),
]


class Attachment(BaseModel):
    """Which tier of which policy gives the benefit, optionally only while an extra condition holds."""

    model_config = ConfigDict(extra="forbid")

    policy_key: PolicyKey = Field(examples=["loyalty"])
    tier: TierCode = Field(examples=["iron_fan"])
    condition: Condition | None = Field(
        None,
        description="An extra condition in the rule language (e.g. the birthday month); null: always with the tier.",
    )


Attachments = Annotated[list[Attachment], Field(max_length=50)]
Channels = Annotated[list[BenefitChannel], Field(min_length=1, max_length=5, json_schema_extra={"uniqueItems": True})]

LOUNGE_EXAMPLE = {
    "code": "lounge-guest-pass",
    "kind": "service",
    "applies_to": "lounge",
    "value": "4",
    "unit": "count",
    "usage_limit": 4,
    "usage_period": "year",
    "channels": ["mobile", "partner"],
    "texts": {
        "en": {"name": "Airport lounge", "description": "Four lounge visits a year at partner airports."},
        "zh-CN": {"name": "机场贵宾厅", "description": "每年 4 次合作机场贵宾厅服务。"},
    },
    "attachments": [{"policy_key": "wealth", "tier": "wealth"}, {"policy_key": "wealth", "tier": "private"}],
}


class BenefitCreate(BaseModel):
    """A new benefit in the catalogue."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [LOUNGE_EXAMPLE], **both_or_neither("usage_limit", "usage_period")},
    )

    code: BenefitCode = Field(description="Stable identifier, lowercase: letters, digits, '_' and '-', 2..40.")
    kind: BenefitKind
    applies_to: AppliesTo | None = Field(
        None,
        description="What the benefit applies to (e.g. fx_fees, lounge): benefits of the same kind for the same "
        "thing conflict, and the best value wins. Null: it conflicts with nothing.",
    )
    value: BenefitValue | None = Field(None, description="The value in `unit`; null for a benefit without one.")
    unit: BenefitUnit = "none"
    usage_limit: Integer(1, 100000) | None = Field(None, description="Uses per period; null: unlimited.")
    usage_period: UsagePeriod | None = Field(None, description="The period `usage_limit` counts over.")
    channels: Channels
    valid_from: Timestamp | None = Field(None, description="In force from (timezone-aware); null: already.")
    valid_to: Timestamp | None = Field(None, description="In force until, exclusive; null: open-ended.")
    texts: Texts
    attachments: Attachments = Field(default_factory=list)
    is_active: Boolean = True


class BenefitUpdate(BaseModel):
    """Send only the fields to change; null clears applies_to, value, the usage limit or the validity window."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"usage_limit": 6}]})

    kind: BenefitKind = None
    applies_to: AppliesTo | None = None
    value: BenefitValue | None = None
    unit: BenefitUnit = None
    usage_limit: Integer(1, 100000) | None = None
    usage_period: UsagePeriod | None = None
    channels: Channels = None
    valid_from: Timestamp | None = None
    valid_to: Timestamp | None = None
    texts: Texts = None
    attachments: Attachments = None
    is_active: Boolean = None

    @field_validator("kind", "unit", "channels", "texts", "attachments", "is_active", mode="before")
    @classmethod
    def refuse_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null; omit the field to keep its current value")
        return value


class BenefitRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    code: str
    kind: BenefitKind
    applies_to: str | None
    value: BenefitValue | None
    unit: BenefitUnit
    usage_limit: int | None
    usage_period: UsagePeriod | None
    channels: list[BenefitChannel]
    valid_from: datetime | None
    valid_to: datetime | None
    texts: dict[str, BenefitText]
    attachments: list[Attachment]
    is_active: bool
    revision: int = Field(description="Raised by every change; GET .../revisions lists each.")
    created_at: datetime
    updated_at: datetime


class BenefitRevisionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    revision: int
    document: BenefitRead = Field(description="The benefit as it read after this revision.")
    actor: str
    at: datetime


# ---- a customer's benefits ---------------------------------------------------------------------------------------


class BenefitReason(BaseModel):
    policy_key: str
    tier: str
    condition: Condition | None = Field(description="The attachment's extra condition, which holds; null: none.")


class Usage(BaseModel):
    limit: int
    period: UsagePeriod
    period_start: date
    period_end: date = Field(description="The first day of the next period, when the count starts again.")
    used: int
    left: int


class BenefitBrief(BaseModel):
    code: str
    kind: BenefitKind
    name: str
    description: str
    value: BenefitValue | None
    unit: BenefitUnit


class Superseded(BaseModel):
    code: str
    value: BenefitValue | None
    policy_key: str
    tier: str
    by: str = Field(description="The benefit that wins over it.")


class BenefitInForce(BenefitBrief):
    applies_to: str | None
    channels: list[BenefitChannel]
    why: list[BenefitReason] = Field(description="Each tier (and condition) that gives it.")
    usage: Usage | None = Field(description="The current period's uses; null when unlimited.")
    supersedes: list[Superseded] = Field(
        description="Benefits of the same kind for the same thing that this one beats (the best value wins)."
    )


_GAP_VALUE = {"anyOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}


class GapCondition(BaseModel):
    pointer: str = Field(description="The comparison in the policy version, as GET .../tiers explains it.")
    attribute: str
    operator: Operator
    threshold: Annotated[Any, WithJsonSchema({})]
    value: str | int | bool | list[str] | None = Field(description="The customer's value, as GET .../tiers has it.")
    met: bool | None
    distance: Annotated[str | int | None, WithJsonSchema(_GAP_VALUE)] = Field(
        description="How much more (or less) it takes: an exact decimal string for amounts, an integer for counts, "
        "days for dates; null when met or not measurable."
    )
    closable: GapClosable
    on_cheapest_path: bool = Field(description="Unmet and on the cheapest way to qualify.")


class Gap(BaseModel):
    met: bool
    closable: GapClosable = Field(description="How the cheapest way can be closed (the hardest of its conditions).")
    cheapest: list[str] = Field(description="Pointers of the conditions to close, the cheapest way (any: one branch).")
    conditions: list[GapCondition]


class AtRisk(BaseModel):
    policy_key: str
    tier: str = Field(description="The tier at risk.")
    downgrade_to: str
    downgrade_on: date
    benefits: list[BenefitBrief] = Field(description="What the customer would lose on that date.")
    keeps_it: Gap | None = Field(
        description="What keeps the tier: its condition, to meet again before downgrade_on (null when the version "
        "that decided it no longer has the tier)."
    )


class NextTier(BaseModel):
    policy_key: str
    tier: str
    label: str
    rank: int
    benefits: list[BenefitBrief] = Field(description="What the tier gives that the customer does not have.")
    gap: Gap | None


class CustomerBenefits(BaseModel):
    customer_id: str
    language: str = Field(description="The language of the texts (from Accept-Language).")
    conflict_rule: str
    in_force: list[BenefitInForce]
    at_risk: list[AtRisk]
    next_tiers: list[NextTier]


# ---- uses and take-up --------------------------------------------------------------------------------------------


class BenefitUseCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"channel": "mobile"}]})

    channel: BenefitChannel | None = Field(None, description="Where it was taken; one of the benefit's channels.")


class BenefitUseRead(BaseModel):
    id: int
    customer_id: str
    benefit_code: str
    policy_key: str
    tier: str
    channel: BenefitChannel | None
    used_at: datetime
    usage: Usage | None = Field(None, description="The period's count after this use; null when unlimited.")


class TakeUpRow(BaseModel):
    benefit_code: str
    policy_key: str
    tier: str
    customers_in_tier: int = Field(description="Customers holding the tier now.")
    customers_using: int = Field(description="Distinct customers with a use given by the tier in the window.")
    uses: int
    take_up_rate: float = Field(description="customers_using / customers_in_tier, 4 places (0 when empty).")


class TakeUpReport(BaseModel):
    from_: datetime = Field(alias="from", serialization_alias="from")
    to: datetime
    rows: list[TakeUpRow]

    model_config = ConfigDict(populate_by_name=True)
