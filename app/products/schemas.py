"""Product catalog request and response bodies, with the catalog's validation rules."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StringConstraints, field_validator
from typing_extensions import TypeAliasType

from app.core.fields import Multiplier, NonNegativeMoney
from app.core.strict import Boolean, Description, Integer, Text, Timestamp
from app.rules.schema import Condition

ProductCategory = TypeAliasType(
    "ProductCategory",
    Annotated[
        Literal["deposit", "wealth", "fund", "insurance", "loan", "card"], Field(description="A product's kind.")
    ],
)
Channel = TypeAliasType(
    "Channel",
    Annotated[
        Literal["mobile", "web", "branch", "rm"],
        Field(description="Where an offer is made: mobile, web, branch, rm (relationship manager)."),
    ],
)

ProductCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{1,39}$")]
TierCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$")]
ProductName = Text(200)
RiskLevel = Integer(1, 5)
RankingMultiplier = Annotated[Multiplier, Field(gt=0, le=100)]
Channels = Annotated[list[Channel], Field(min_length=1, max_length=4, json_schema_extra={"uniqueItems": True})]
TargetTiers = Annotated[list[TierCode], Field(max_length=50, json_schema_extra={"uniqueItems": True})]
# A condition in the rule language (app.rules); stored as given until that language's validator is wired in.
EligibilityCondition = Condition

CODE_DOC = "Stable identifier, lowercase: letters, digits, '_' and '-', 2..40 characters. Holdings refer to it."
RISK_DOC = (
    "Risk level 1..5, shown to customers as R1 (lowest) .. R5; offered only to customers whose risk "
    "tolerance is at least this level."
)
MIN_AMOUNT_DOC = "Smallest amount a customer can put in or borrow, in the service currency (a decimal string)."
CHANNELS_DOC = "Where the product may be offered: mobile, web, branch, rm (relationship manager). No duplicates."
WINDOW_FROM_DOC = "Start of the sales window (timezone-aware); null means already on sale."
WINDOW_TO_DOC = "End of the sales window (timezone-aware, after active_from); null means open-ended."
VALUE_WEIGHT_DOC = "The bank's value of a sale, a ranking multiplier in (0, 100]; 1 is neutral."
LEVER_DOC = "Business push for a campaign, a ranking multiplier in (0, 100]; 1 is neutral."
TIERS_DOC = "Tier codes the product is meant for; empty means every tier."
ELIGIBILITY_DOC = "Who may be offered the product: a condition document in the rule language, or null for everyone."
SERVICE_DOC = "A service message (e.g. a card replacement), exempt from marketing contact limits."

TERM_DEPOSIT_EXAMPLE = {
    "product_code": "td-12m",
    "name": "12-month term deposit",
    "category": "deposit",
    "risk_level": 1,
    "min_amount": "1000.00",
    "channels": ["mobile", "web", "branch"],
    "active_from": "2026-01-01T00:00:00Z",
    "active_to": "2026-12-31T23:59:59Z",
    "value_weight": "1.2",
    "lever": "1.0",
    "target_tiers": [],
    "eligibility": {
        "all": [{"attr": "age", "op": "gte", "value": 18}, {"attr": "deposit_balance", "op": "gte", "value": 1000}]
    },
    "is_service": False,
    "description": "Fixed 2.75% p.a. for 12 months; interest paid at maturity; no early withdrawal.",
}
BALANCED_FUND_EXAMPLE = {
    "product_code": "fund-balanced-r3",
    "name": "Balanced Growth Fund",
    "category": "fund",
    "risk_level": 3,
    "min_amount": "500.00",
    "channels": ["mobile", "web", "rm"],
    "value_weight": "2.5",
    "lever": "1.3",
    "target_tiers": ["affluent", "private"],
    "eligibility": {
        "all": [
            {"attr": "aum", "op": "gte", "value": 25000},
            {"not": {"attr": "held_categories", "op": "contains", "value": "fund"}},
        ]
    },
    "description": "60/40 equities and bonds, daily dealing, ongoing charge 0.85%.",
}


def _refuse_duplicates(values: list[str] | None) -> list[str] | None:
    if values is not None and len(set(values)) != len(values):
        duplicates = sorted({value for value in values if values.count(value) > 1})
        raise ValueError(f"duplicate entries: {', '.join(duplicates)}")
    return values


class ProductCreate(BaseModel):
    """A new catalog entry."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [TERM_DEPOSIT_EXAMPLE, BALANCED_FUND_EXAMPLE]}
    )

    product_code: ProductCode = Field(description=CODE_DOC)
    name: ProductName = Field(description="Name shown to customers.")
    category: ProductCategory
    risk_level: RiskLevel = Field(description=RISK_DOC)
    min_amount: NonNegativeMoney = Field(Decimal("0"), description=MIN_AMOUNT_DOC)
    channels: Channels = Field(description=CHANNELS_DOC)
    active_from: Timestamp | None = Field(None, description=WINDOW_FROM_DOC)
    active_to: Timestamp | None = Field(None, description=WINDOW_TO_DOC)
    value_weight: RankingMultiplier = Field(Decimal("1"), description=VALUE_WEIGHT_DOC)
    lever: RankingMultiplier = Field(Decimal("1"), description=LEVER_DOC)
    target_tiers: TargetTiers = Field(default_factory=list, description=TIERS_DOC)
    eligibility: EligibilityCondition | None = Field(None, description=ELIGIBILITY_DOC)
    is_service: Boolean = Field(False, description=SERVICE_DOC)
    description: Description = ""
    is_active: Boolean = Field(True, description="False creates the product switched off.")

    @field_validator("channels", "target_tiers")
    @classmethod
    def refuse_duplicate_entries(cls, values: list[str] | None) -> list[str] | None:
        return _refuse_duplicates(values)


# Fields a PATCH may clear with null; every other field must be omitted rather than set to null.
NULLABLE_ON_UPDATE = frozenset({"active_from", "active_to", "eligibility"})


class ProductUpdate(BaseModel):
    """A partial update: send only the fields to change; null clears active_from, active_to or eligibility."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"lever": "1.5", "channels": ["mobile", "web"], "active_to": "2026-06-30T23:59:59+02:00"},
                {"eligibility": None, "target_tiers": ["mass", "affluent"]},
            ]
        },
    )

    name: ProductName = Field(None, description="Name shown to customers.")
    category: ProductCategory = None
    risk_level: RiskLevel = Field(None, description=RISK_DOC)
    min_amount: NonNegativeMoney = Field(None, description=MIN_AMOUNT_DOC)
    channels: Channels = Field(None, description=CHANNELS_DOC)
    active_from: Timestamp | None = Field(None, description=WINDOW_FROM_DOC)
    active_to: Timestamp | None = Field(None, description=WINDOW_TO_DOC)
    value_weight: RankingMultiplier = Field(None, description=VALUE_WEIGHT_DOC)
    lever: RankingMultiplier = Field(None, description=LEVER_DOC)
    target_tiers: TargetTiers = Field(None, description=TIERS_DOC)
    eligibility: EligibilityCondition | None = Field(None, description=ELIGIBILITY_DOC)
    is_service: Boolean = Field(None, description=SERVICE_DOC)
    description: Description = None
    is_active: Boolean = Field(None, description="True reactivates a deactivated product.")

    @field_validator("channels", "target_tiers")
    @classmethod
    def refuse_duplicate_entries(cls, values: list[str] | None) -> list[str] | None:
        return _refuse_duplicates(values)

    @field_validator("*", mode="before")
    @classmethod
    def refuse_null_for_required_fields(cls, value: Any, info) -> Any:
        if value is None and info.field_name not in NULLABLE_ON_UPDATE:
            raise ValueError("may not be null; omit the field to keep its current value")
        return value


class ProductRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_code: str = Field(validation_alias=AliasChoices("product_code", "code"), description=CODE_DOC)
    name: str
    category: ProductCategory
    risk_level: int = Field(description=RISK_DOC)
    min_amount: NonNegativeMoney = Field(description=MIN_AMOUNT_DOC)
    channels: list[Channel]
    active_from: datetime | None
    active_to: datetime | None
    value_weight: RankingMultiplier = Field(description=VALUE_WEIGHT_DOC)
    lever: RankingMultiplier = Field(description=LEVER_DOC)
    target_tiers: list[str] = Field(description=TIERS_DOC)
    eligibility: Condition | None = Field(description=ELIGIBILITY_DOC)
    is_service: bool = Field(description=SERVICE_DOC)
    description: str
    is_active: bool = Field(description="False once deactivated; inactive products are never recommended.")
    created_at: datetime
    updated_at: datetime
