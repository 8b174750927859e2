"""Bodies of the worklist rules (one document: a section per task kind the bank configures, null when off) and of
the care holiday calendar."""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from app.core.strict import Boolean, Day, Integer, Numeric, Text
from app.feedback.schemas import ComplaintCategory
from app.managers.schemas import PolicyKey, TierCode

HolidayKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{1,39}$")]
HolidayName = Text(200)
HolidayNames = Annotated[
    dict[Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")], HolidayName],
    Field(max_length=20, json_schema_extra={"additionalProperties": False}),  # keys: language tags only
]


SHARE_PATTERN = r"^0\.([1-4][0-9]{0,3}|0[1-9][0-9]{0,2}|00[1-9][0-9]?|000[1-9]|50{0,3})$"  # (0, 0.5], 4 places
PROBABILITY_PATTERN = r"^(0(\.[0-9]{1,4})?|1(\.0{1,4})?)$"  # [0, 1], 4 places


class CareRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    birthdays: Boolean = Field(True, description="A task before each customer's birthday.")
    anniversaries: Boolean = Field(True, description="A task before each anniversary of the customer's onboarding.")
    holidays: Boolean = Field(True, description="A task before each holiday of the care calendar.")
    days_before: Integer(0, 60, description="Birthdays and anniversaries: the task is due this many days before.") = 7
    holiday_days_before: Integer(0, 90, description="Holidays: the task is due this many days before.") = 14


class ComplaintSlaRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    days: Integer(
        1,
        365,
        description="A complaint still open (or in progress) this many days after it was opened "
        "is past its SLA: a task to call the customer back.",
    )
    days_by_category: dict[ComplaintCategory, Integer(1, 365)] = Field(
        default_factory=dict,
        description="An SLA per complaint category, in place of `days` for it.",
        examples=[{"fraud": 1}],
    )


class NearMissRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    share: Numeric(5, 4, gt=Decimal(0), le=Decimal("0.5"), pattern=SHARE_PATTERN) = Field(
        description="A customer is near the next tier of their manager's policy when every condition still unmet "
        "on the cheapest way there (the benefits view's gap) is a number within this share of its threshold.",
        examples=["0.10"],
    )


class GoneQuietRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    lifecycle_policy_key: PolicyKey = Field("lifecycle", description="The policy whose tiers say who went quiet.")
    quiet_tiers: list[TierCode] = Field(
        default_factory=lambda: ["declining", "dormant"],
        min_length=1,
        max_length=20,
        examples=[["declining", "dormant"]],
    )
    valuable_policy_key: PolicyKey = Field("wealth", description="The policy whose tiers say who is valuable.")
    valuable_tiers: list[TierCode] = Field(
        default_factory=lambda: ["private", "wealth"], min_length=1, max_length=20, examples=[["private", "wealth"]]
    )
    min_churn_risk: Numeric(5, 4, ge=Decimal(0), le=Decimal(1), pattern=PROBABILITY_PATTERN) | None = Field(
        None,
        description="A valuable customer whose churn_risk (the features view's score by the newest churn model, "
        "GET /v1/reports/churn-models) is at or above this probability gets a gone-quiet task too, its reason "
        "quoting the probability and the model version; once a month, none while one is open. Null: off; with no "
        "churn model fitted (`tierwise fit-churn`), none.",
        examples=["0.70"],
    )


class WorklistRulesSet(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "care": {"days_before": 7, "holiday_days_before": 14},
                    "complaint_sla": {"days": 5, "days_by_category": {"fraud": 1}},
                    "near_miss": {"share": "0.10"},
                    "gone_quiet": {
                        "lifecycle_policy_key": "lifecycle",
                        "quiet_tiers": ["declining", "dormant"],
                        "valuable_policy_key": "wealth",
                        "valuable_tiers": ["private", "wealth"],
                        "min_churn_risk": "0.70",
                    },
                }
            ]
        },
    )

    care: CareRule | None = Field(None, description="Care dates: birthdays, anniversaries, holidays. Null: none.")
    complaint_sla: ComplaintSlaRule | None = Field(None, description="Complaints open past an SLA. Null: none.")
    near_miss: NearMissRule | None = Field(None, description="Near-miss upgrades. Null: none.")
    gone_quiet: GoneQuietRule | None = Field(
        None, description="Valuable customers gone quiet (or at churn risk). Null: none."
    )


class WorklistRulesRead(WorklistRulesSet):
    updated_at: datetime | None = Field(description="Null until the rules are first set.")


class HolidayCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "holiday_key": "spring-festival-2027",
                    "name": "Spring Festival",
                    "names": {"zh-CN": "春节"},
                    "date": "2027-02-06",
                }
            ]
        },
    )

    holiday_key: HolidayKey = Field(
        description="The bank's key for the holiday that year.", examples=["mid-autumn-2027"]
    )
    name: HolidayName = Field(examples=["Mid-Autumn Festival"])
    names: HolidayNames = Field(
        default_factory=dict, description="The name per language.", examples=[{"zh-CN": "中秋节"}]
    )
    date: Day = Field(examples=["2027-09-15"])


class HolidayUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"date": "2027-09-15"}]})

    name: HolidayName = None  # each may be left out, not set to null
    names: HolidayNames = None
    date: Day = None


class HolidayRead(BaseModel):
    holiday_key: str
    name: str
    names: dict[str, str]
    date: date
    updated_at: datetime
