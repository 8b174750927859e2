"""Report bodies: tier distribution and migrations, the recommendation funnel, satisfaction."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.core.fields import Money
from app.recommendations.schemas import RecommendationStrategy


class Interval(BaseModel):
    """A 95% confidence interval."""

    low: float
    high: float


class TierDistributionEntry(BaseModel):
    """One tier's customers and assets."""

    tier: str
    label: str | None = Field(description="The tier's label in the active version; null for a tier it no longer has.")
    rank: int
    customers: int
    aum: Money = Field(
        description="Total assets under management of the tier's customers (deposit, wealth, fund "
        "and insurance balances)."
    )


class TierDistribution(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "policy_key": "wealth",
                    "customers": 2000,
                    "aum": "412500000.00",
                    "tiers": [
                        {
                            "tier": "private",
                            "label": "Private Banking",
                            "rank": 40,
                            "customers": 12,
                            "aum": "180400000.00",
                        },
                        {"tier": "mass", "label": "Everyday", "rank": 10, "customers": 1650, "aum": "21850000.00"},
                    ],
                }
            ]
        }
    )

    policy_key: str
    customers: int
    aum: Money
    tiers: list[TierDistributionEntry] = Field(
        description="By effective tier (an unexpired override wins), highest rank first."
    )


class TierMove(BaseModel):
    from_tier: str | None = Field(description="null for a customer's first assignment.")
    to_tier: str
    count: int


class TierMigrations(BaseModel):
    policy_key: str
    from_: datetime = Field(alias="from")
    to: datetime
    moves: list[TierMove] = Field(description="The matrix of moves in [from, to), as non-empty cells.")
    upgrades: int
    downgrades: int
    lateral: int
    initial: int


class Rate(BaseModel):
    rate: float | None = Field(description="Successes / impressions; null without impressions.")
    interval: Interval | None = Field(description="95% Wilson score interval.")


class FunnelRow(BaseModel):
    product_code: str
    tier: str = Field(description="The customer's tier when served ('-' when none).")
    impressions: int = Field(description="Recommendations seen: with any feedback event in the range.")
    clicks: int = Field(description="Recommendations clicked, accepted or converted.")
    accepts: int = Field(description="Recommendations accepted or converted.")
    conversions: int
    click_rate: Rate
    accept_rate: Rate
    conversion_rate: Rate


class ArmResult(BaseModel):
    strategy: RecommendationStrategy
    impressions: int
    conversions: int
    conversion_rate: Rate


class Uplift(BaseModel):
    difference: float = Field(description="Treatment conversion rate minus holdout conversion rate.")
    interval: Interval = Field(description="95% normal-approximation interval of the difference.")


class RecommendationFunnel(BaseModel):
    from_: datetime = Field(alias="from")
    to: datetime
    rows: list[FunnelRow]
    treatment: ArmResult = Field(description="Personalised recommendations.")
    holdout: ArmResult = Field(description="The popularity holdout.")
    uplift: Uplift | None = Field(description="null when either arm has no impressions.")


class TierSatisfaction(BaseModel):
    tier: str = Field(description="Effective tier under the policy ('-' for customers without one).")
    nps_responses: int = Field(description="Customers with an NPS answer in the range (their latest counts).")
    promoters: int
    detractors: int
    nps: float | None = Field(description="Promoters% - detractors%, -100..100; null without answers.")
    csat_responses: int
    csat_avg: float | None


class CountBy(BaseModel):
    key: str
    count: int


class SatisfactionReport(BaseModel):
    policy_key: str
    from_: datetime = Field(alias="from")
    to: datetime
    nps: float | None = Field(description="Over every tier.")
    nps_responses: int
    csat_avg: float | None
    tiers: list[TierSatisfaction]
    complaints: int = Field(description="Complaints opened in the range.")
    complaints_by_status: list[CountBy]
    complaints_by_category: list[CountBy]
    median_days_to_resolve: float | None = Field(description="Of the complaints opened in the range and resolved.")
