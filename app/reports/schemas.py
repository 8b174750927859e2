"""Report bodies: tier distribution and migrations, the recommendation funnel, satisfaction, retention,
stickiness, contribution and per-manager performance; contribution margins and churn model versions."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from app.core.fields import Money, MoneyTotal, NonNegativeMoney, decimal_string
from app.recommendations.schemas import RecommendationStrategy

MarginRate = decimal_string(
    digits=1,
    places=6,
    sign="any",
    example="0.015",
    description="An annual rate in -1..1: a decimal string, 6 decimals at most.",
    limit=1,
)


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
    aum: MoneyTotal = Field(
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
    aum: MoneyTotal
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


# ---- retention and value -----------------------------------------------------------------------------------


class Retention(BaseModel):
    customers: int = Field(description="Customers holding the tier (or, for a manager, in the portfolio) at `from`.")
    retained: int = Field(description="Of them: still customers at `to`, in the same tier or above.")
    upgraded: int = Field(description="Of them: still customers at `to`, in a higher tier.")
    downgraded: int = Field(description="Of them: still customers at `to`, in a lower tier.")
    lost: int = Field(description="Of them: erased before `to`, or without a tier at `to`.")
    retention: Rate = Field(description="retained / customers with its 95% Wilson interval.")


class TierRetention(Retention):
    tier: str = Field(description="The tier held at `from` (the target of the customer's latest move before it).")
    label: str | None = Field(description="The tier's label in the active version; null for a tier it no longer has.")
    rank: int | None


class RetentionReport(BaseModel):
    policy_key: str
    from_: datetime = Field(alias="from")
    to: datetime
    customers: int
    retained: int
    retention: Rate
    tiers: list[TierRetention] = Field(description="By the tier held at `from`, highest rank first.")


class Stickiness(BaseModel):
    customers: int
    active_30d: int = Field(description="Customers who logged in on one of the 30 days ending on `on` (`to`'s day).")
    stickiness: float | None = Field(description="active_30d / customers.")


class TierStickiness(Stickiness):
    tier: str
    label: str | None
    rank: int


class StickinessReport(BaseModel):
    policy_key: str
    on: date = Field(description="The last day of the 30-day window (the day of `to`).")
    customers: int
    active_30d: int
    stickiness: float | None
    tiers: list[TierStickiness] = Field(description="By effective tier now, highest rank first.")


class Contribution(BaseModel):
    customers: int
    contribution_monthly: MoneyTotal = Field(
        description="The sum of the customers' contribution_monthly attribute: the bank's own figure when it feeds "
        "one, else derived from balances and the products' contribution margins."
    )
    per_customer: MoneyTotal | None = Field(description="contribution_monthly / customers; null without customers.")


class TierContribution(Contribution):
    tier: str
    label: str | None
    rank: int
    per_customer: MoneyTotal


class TrendTier(BaseModel):
    tier: str = Field(description="Effective tier now.")
    customers: int
    contribution: MoneyTotal


class ContributionMonth(BaseModel):
    month: date = Field(description="The month's first day.")
    contribution: MoneyTotal = Field(
        description="Derived from each product's last balance of the month and its margin now (a figure the bank "
        "feeds has no history)."
    )
    tiers: list[TrendTier]


class ContributionReport(BaseModel):
    policy_key: str
    from_: datetime = Field(alias="from")
    to: datetime
    customers: int
    contribution_monthly: MoneyTotal
    tiers: list[TierContribution] = Field(description="By effective tier now, highest rank first.")
    trend: list[ContributionMonth] = Field(description="The months with balances in [from, to), oldest first.")


class ManagerPerformance(BaseModel):
    manager_id: str
    name: str
    team: str
    portfolio: int = Field(description="Customers the manager serves now.")
    contacts: int = Field(description="Contacts the manager made in the range.")
    tasks_done: int = Field(description="Tasks of the manager's customers closed done in the range.")
    tasks_done_on_time: int = Field(description="Of them: closed on or before their due date (UTC).")
    on_time: Rate
    portfolio_retention: Retention = Field(description="Of the customers the manager served at `from`.")
    upgrades: int = Field(description="Tier upgrades of that portfolio in the range.")
    downgrades: int
    net_migration: int = Field(description="upgrades - downgrades.")
    portfolio_stickiness: Stickiness = Field(description="Of the customers the manager serves now, at `to`.")
    portfolio_contribution: Contribution = Field(description="Of the customers the manager serves now.")


class ContributionMarginSet(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"margin_rate": "0.015"}]})

    margin_rate: MarginRate = Field(ge=-1, le=1, description="Annual margin on the balance, -1..1 (0.015 = 1.5%).")
    monthly_fee: NonNegativeMoney = Field(Decimal(0), description="A fee per month the product is held.")


class ContributionMarginRead(BaseModel):
    product_code: str
    margin_rate: MarginRate
    monthly_fee: Money
    updated_at: datetime


class ChurnModelRead(BaseModel):
    version: int
    features: list[str] = Field(description="In the order of `coefficients`.")
    intercept: float
    coefficients: list[float] = Field(description="On the features' raw scale: churn_risk = 1 / (1 + e^-(b0 + b.x)).")
    horizon_months: int
    decline_share: Decimal = Field(description="A decline: assets below (1 - share) of a month-end's within horizon.")
    window_from: date
    window_until: date
    rows: int
    positives: int
    metrics: dict[str, Any] = Field(description="The held-out evaluation: auc, baseline_auc, months, rows.")
    fitted_by: str
    fitted_at: datetime
