"""Recommendation and contact-policy request/response bodies."""

from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator

from app.core.strict import Boolean, Integer, ParamInteger, QueryBoolean
from app.products.schemas import ProductCode

Channel = Literal["mobile", "web", "branch", "rm"]


class Reason(BaseModel):
    code: str = Field(description="ELIGIBLE, SUITABLE, CO_HOLDING, LEARNED_PROPENSITY, WIN_BACK, TIER_TARGET or "
                                  "POPULAR_IN_TIER (holdout)")
    text: str = Field(description="The fact in words, e.g. 'aum_avg_3m 620,000 >= 500,000'.")
    value: Any = None


class ProductRef(BaseModel):
    code: str
    name: str
    category: str
    risk_level: int


class ScoreParts(BaseModel):
    propensity: float = Field(description="Learned acceptance propensity for this customer (0..1).")
    value: float = Field(description="The product's value weight.")
    lever: float = Field(description="The business lever (campaign boost or brake).")


class RecommendationRead(BaseModel):
    recommendation_id: UUID = Field(description="Report impressions, clicks, accepts, dismissals and conversions "
                                                "against this id at POST /v1/feedback/events.")
    rank: int
    product: ProductRef
    score: float = Field(description="propensity x value x lever")
    score_parts: ScoreParts
    reasons: list[Reason]


class FilteredProduct(BaseModel):
    product_code: str
    filter: str = Field(description="inactive, not_on_channel, excluded_by_caller, already_held, not_eligible, "
                                    "not_target_tier, not_suitable, no_marketing_consent or contact_policy")
    detail: str


class RecommendationsRead(BaseModel):
    customer_id: str
    tier: str | None = Field(description="The customer's tier under the primary policy, which propensities are "
                                         "learned per.")
    strategy: Literal["personalised", "holdout_popularity"] = Field(
        description="holdout_popularity: this customer is in the holdout and gets the unpersonalised baseline.")
    items: list[RecommendationRead]
    filtered_out: list[FilteredProduct] | None = Field(None, description="With explain=true: every product left "
                                                                         "out and the filter that removed it.")


class RecommendationQuery(BaseModel):
    """The query parameters of GET .../recommendations (one model for the route and the hot path; frozen, as the
    hot path shares one instance among the requests with the same query string)."""

    model_config = ConfigDict(frozen=True)

    limit: ParamInteger(1, 10) = 3
    channel: Channel = "mobile"
    exclude: list[ProductCode] = Field([], max_length=50, description="Codes of products already shown elsewhere.")
    explain: QueryBoolean = Field(False, description="Also list the products filtered out, and why.")
    seed: ParamInteger(0, 2**31) | None = Field(None, description="Makes exploration repeatable.")
    explore: QueryBoolean = Field(True, description="false: rank by posterior means, no sampling.")


class ContactRuleIn(BaseModel):
    """A rule holds while at least N of its outcomes fall within the last W days and the latest is under S days
    old: a rest longer than the window is cut to it (give a dismissal's cooldown a window as long as itself)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    outcome: Literal["ignored_impression", "dismiss"] = Field(
        description="ignored_impression: shown with no click, accept or conversion; dismiss: turned down.")
    threshold: Integer(1, 100) = Field(description="N outcomes ...")
    window_days: Integer(1, 365) = Field(description="... within W days ...")
    scope: Literal["product", "category"] = Field(description="... for the same product or category ...")
    channel: Channel | None = Field(None, description="... on this channel (null: any) ...")
    suppress_days: Integer(1, 365) = Field(description="... suppress offers for S days.")
    is_active: Boolean = True


class ContactPolicy(BaseModel):
    """The whole contact policy; PUT replaces every rule. Service products are exempt from it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"rules": [
        {"name": "ignored-thrice", "outcome": "ignored_impression", "threshold": 3, "window_days": 30,
         "scope": "product", "channel": None, "suppress_days": 14},
        {"name": "dismissed", "outcome": "dismiss", "threshold": 1, "window_days": 60, "scope": "product",
         "channel": None, "suppress_days": 60},
        {"name": "category-fatigue", "outcome": "dismiss", "threshold": 3, "window_days": 90,
         "scope": "category", "channel": "mobile", "suppress_days": 90}]}]})

    rules: list[ContactRuleIn] = Field(max_length=50)

    @model_validator(mode="after")
    def unique_names(self) -> "ContactPolicy":
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        return self
