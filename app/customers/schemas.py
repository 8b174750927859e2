"""Customer, holdings and event request/response bodies."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import Path
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from typing_extensions import TypeAliasType

from app.core.fields import Money, MoneyTotal
from app.core.strict import ATTRIBUTE_VALUE_SCHEMA, NO_NUL_PATTERN, Boolean, Day, Integer, Timestamp

Segment = TypeAliasType(
    "Segment", Annotated[Literal["retail", "small_business"], Field(description="The customer's banking segment.")]
)
TransactionChannel = TypeAliasType(
    "TransactionChannel",
    Annotated[
        Literal["mobile", "web", "branch", "atm", "card", "transfer"],
        Field(description="Where a transaction was made."),
    ],
)
TransactionDirection = TypeAliasType(
    "TransactionDirection",
    Annotated[Literal["credit", "debit"], Field(description="credit: money in; debit: money out.")],
)
LoginChannel = TypeAliasType(
    "LoginChannel", Annotated[Literal["mobile", "web"], Field(description="Which app the customer logged in to.")]
)
EXTERNAL_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$"
ExternalId = Annotated[str, StringConstraints(pattern=EXTERNAL_ID_PATTERN), Field(examples=["C00000042"])]
CUSTOMER_ID_EXAMPLE = "C00000042"
ExternalIdPath = Annotated[
    ExternalId, Path(alias="customer_id", description="The bank's own customer id.", examples=[CUSTOMER_ID_EXAMPLE])
]
CustomAttributes = Annotated[
    dict[str, Any],
    WithJsonSchema(
        {
            "type": "object",
            "additionalProperties": ATTRIBUTE_VALUE_SCHEMA,
            "maxProperties": 50,
            "description": "Values of custom attributes declared at /v1/attributes/custom, each of its declared type: "
            "a number, an integer, a string, a boolean, a date (YYYY-MM-DD) or a list of strings.",
        }
    ),
]
MAX_CUSTOM_ATTRIBUTES = 50
CLOCK_SKEW = timedelta(minutes=5)


def _not_in_future(value: datetime | None) -> datetime | None:
    if value is not None and value > datetime.now(UTC) + CLOCK_SKEW:
        raise ValueError("must not be in the future")
    return value


RISK_LEVEL_WITHOUT_DATE = {
    "required": ["risk_level"],
    "properties": {"risk_level": {"not": {"type": "null"}}, "risk_assessed_at": {"type": "null"}},
}
"""A risk level without its assessment date (left out, or null): refused."""


class CustomerFields(BaseModel):
    """Profile fields shared by upsert and patch."""

    model_config = ConfigDict(extra="forbid")

    display_name: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=NO_NUL_PATTERN,
        description="Optional name for relationship managers; personal data.",
    )
    birth_date: Day | None = Field(None, description="Personal data; used for age and birthday care lists.")
    risk_level: Integer(1, 5) | None = Field(None, description="Assessed risk tolerance C1..C5 (1 = cautious).")
    risk_assessed_at: Timestamp | None = Field(
        None, description="When the risk questionnaire was done; it expires after a configured period (a year)."
    )
    marketing_consent: Boolean | None = None
    attributes: CustomAttributes | None = Field(
        None, description="Values of custom attributes declared at /v1/attributes/custom; null removes one."
    )

    @field_validator("birth_date")
    @classmethod
    def birth_date_is_plausible(cls, value: date | None) -> date | None:
        if value is not None and not (date(1900, 1, 1) <= value <= datetime.now(UTC).date()):
            raise ValueError("must be between 1900-01-01 and today")
        return value

    @field_validator("risk_assessed_at")
    @classmethod
    def assessed_not_in_future(cls, value):
        return _not_in_future(value)

    @field_validator("attributes")
    @classmethod
    def few_attributes(cls, value):
        if value is not None and len(value) > MAX_CUSTOM_ATTRIBUTES:
            raise ValueError(f"at most {MAX_CUSTOM_ATTRIBUTES} custom attributes")
        return value


class CustomerUpsert(CustomerFields):
    """The whole profile, as PUT /v1/customers/{customer_id} sends it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "dependentRequired": {"risk_level": ["risk_assessed_at"]},
            "not": RISK_LEVEL_WITHOUT_DATE,  # nor null beside a risk level (risk_level_needs_assessment_date)
            "examples": [
                {
                    "segment": "retail",
                    "display_name": "Maria Rossi",
                    "birth_date": "1979-04-12",
                    "onboarded_at": "2012-06-01T09:30:00Z",
                    "risk_level": 3,
                    "risk_assessed_at": "2026-02-10T14:00:00Z",
                    "marketing_consent": True,
                }
            ],
        },
    )

    segment: Segment
    onboarded_at: Timestamp = Field(description="When the customer relationship started.")
    marketing_consent: Boolean = False
    attributes: CustomAttributes = Field(
        default_factory=dict, description="Values of custom attributes declared at /v1/attributes/custom."
    )

    @field_validator("onboarded_at")
    @classmethod
    def onboarded_not_in_future(cls, value):
        return _not_in_future(value)

    @model_validator(mode="after")
    def risk_level_needs_assessment_date(self) -> "CustomerUpsert":
        if self.risk_level is not None and self.risk_assessed_at is None:
            raise ValueError("risk_assessed_at is required when risk_level is given")
        return self


class CustomerImportLine(CustomerUpsert):
    """One NDJSON line of POST /v1/customers/import."""

    model_config = ConfigDict(extra="forbid")

    customer_id: ExternalId = Field(description="The bank's own customer id.")


class CustomerPatch(CustomerFields):
    """Any subset of the profile; fields left out are unchanged, null clears an optional field."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"risk_level": 4, "risk_assessed_at": "2026-11-20T10:00:00Z"}, {"marketing_consent": False}],
            # a risk level with the date cleared beside it (whether one left out is needed depends on the stored one)
            "not": {**RISK_LEVEL_WITHOUT_DATE, "required": ["risk_level", "risk_assessed_at"]},
        },
    )

    segment: Segment = None  # may be left out, not set to null (nor onboarded_at, marketing_consent)
    onboarded_at: Timestamp = None
    marketing_consent: Boolean = None

    @field_validator("segment", "onboarded_at", "marketing_consent", mode="before")
    @classmethod
    def not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null; omit the field to keep its current value")
        return value


class CustomerMetrics(BaseModel):
    """Metrics derived from holdings and activity; the same values rules see."""

    aum: MoneyTotal = Field(description="Assets under management today: deposit, wealth, fund and insurance balances.")
    aum_avg_3m: MoneyTotal = Field(description="Daily-average AUM over the trailing three months, to the cent.")
    aum_trend_3m: Decimal | None = Field(description="Today's AUM against that average: -0.25 is 25% below it.")
    deposit_balance: MoneyTotal
    investment_balance: MoneyTotal
    loan_balance: MoneyTotal
    products_held_count: int
    held_products: list[str]
    held_categories: list[str]
    tenure_months: int
    age: int | None
    txn_count_90d: int
    txn_amount_90d: MoneyTotal
    days_since_last_txn: int | None
    logins_30d: int
    referrals_12m: int
    risk_tolerance: int | None = Field(description="risk_level while the assessment is valid, else null.")


class CustomerSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    customer_id: str = Field(
        validation_alias=AliasChoices("customer_id", "external_id"), description="The bank's own customer id."
    )
    segment: Segment
    display_name: str | None
    birth_date: date | None
    onboarded_at: datetime
    risk_level: int | None
    risk_assessed_at: datetime | None
    marketing_consent: bool
    attributes: CustomAttributes
    created_at: datetime
    updated_at: datetime


class CustomerRead(CustomerSummary):
    """The profile with the metrics rules see."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C00000042",
                    "segment": "retail",
                    "display_name": "Maria Rossi",
                    "birth_date": "1979-04-12",
                    "onboarded_at": "2012-06-01T09:30:00Z",
                    "risk_level": 3,
                    "risk_assessed_at": "2026-02-10T14:00:00Z",
                    "marketing_consent": True,
                    "attributes": {"employer_payroll": True},
                    "created_at": "2026-01-05T10:00:00Z",
                    "updated_at": "2026-11-22T08:14:05Z",
                    "metrics": {
                        "aum": "190950.20",
                        "aum_avg_3m": "185300.75",
                        "aum_trend_3m": "0.0305",
                        "deposit_balance": "58450.20",
                        "investment_balance": "132500.00",
                        "loan_balance": "0.00",
                        "products_held_count": 3,
                        "held_products": ["balanced_fund", "current_account", "term_deposit_12m"],
                        "held_categories": ["deposit", "fund"],
                        "tenure_months": 173,
                        "age": 47,
                        "txn_count_90d": 112,
                        "txn_amount_90d": "9830.40",
                        "days_since_last_txn": 0,
                        "logins_30d": 21,
                        "referrals_12m": 1,
                        "risk_tolerance": 3,
                    },
                }
            ]
        }
    )

    metrics: CustomerMetrics


class HoldingIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    product_code: str = Field(min_length=1, max_length=40, pattern=NO_NUL_PATTERN, examples=["savings_account"])
    opened_at: Day | None = None
    balance: Money = Field(description="Balance in the configured currency; loans and cards as amounts owed.")
    as_of: Day = Field(description="The date the balance was taken.")

    @field_validator("as_of")
    @classmethod
    def as_of_not_in_future(cls, value: date) -> date:
        if value > datetime.now(UTC).date() + timedelta(days=1):
            raise ValueError("must not be in the future")
        return value


class HoldingsPut(BaseModel):
    """The customer's complete set of products; products left out are closed."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "holdings": [
                        {
                            "product_code": "current_account",
                            "opened_at": "2012-06-01",
                            "balance": "8450.20",
                            "as_of": "2026-11-22",
                        },
                        {
                            "product_code": "term_deposit_12m",
                            "opened_at": "2026-01-15",
                            "balance": "50000.00",
                            "as_of": "2026-11-22",
                        },
                        {
                            "product_code": "balanced_fund",
                            "opened_at": "2024-03-02",
                            "balance": "132500.00",
                            "as_of": "2026-11-22",
                        },
                    ]
                }
            ]
        },
    )

    holdings: list[HoldingIn] = Field(max_length=200)

    @field_validator("holdings")
    @classmethod
    def unique_products(cls, value: list[HoldingIn]) -> list[HoldingIn]:
        codes = [h.product_code for h in value]
        if len(set(codes)) != len(codes):
            raise ValueError("each product_code may appear once")
        return value


class HoldingRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    product_code: str
    opened_at: date | None
    balance: Money
    as_of: date


class HoldingsRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "holdings": [
                        {
                            "product_code": "current_account",
                            "opened_at": "2012-06-01",
                            "balance": "8450.20",
                            "as_of": "2026-11-22",
                        },
                        {
                            "product_code": "balanced_fund",
                            "opened_at": "2024-03-02",
                            "balance": "132500.00",
                            "as_of": "2026-11-22",
                        },
                    ]
                }
            ]
        }
    )

    holdings: list[HoldingRead]
