"""Recommendation and contact-policy request/response bodies."""

from datetime import date
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from typing_extensions import TypeAliasType

from app.core.i18n import LanguageTag
from app.core.strict import NO_NUL_PATTERN, Boolean, Integer, ParamInteger, QueryBoolean
from app.products.schemas import Channel, ProductCategory, ProductCode
from app.rules.schema import ConditionResult

RecommendationStrategy = TypeAliasType(
    "RecommendationStrategy",
    Annotated[
        Literal["personalised", "holdout_popularity"],
        Field(
            description="personalised; or holdout_popularity: the customer is in the holdout, served the "
            "unpersonalised baseline."
        ),
    ],
)
FilterReason = TypeAliasType(
    "FilterReason",
    Annotated[
        Literal[
            "inactive",
            "sold_out",
            "not_on_channel",
            "excluded_by_caller",
            "already_held",
            "not_eligible",
            "not_target_tier",
            "not_suitable",
            "no_marketing_consent",
            "contact_policy",
        ],
        Field(description="Why a product was left out of a customer's recommendations."),
    ],
)

ContactOutcome = TypeAliasType("ContactOutcome", Literal["ignored_impression", "dismiss"])
ContactScope = TypeAliasType("ContactScope", Literal["product", "category"])


class _Reason(BaseModel):
    code: str  # each reason narrows it to its own literal; declared here so that it comes first, before the text
    text: str = Field(
        description="The fact in words, in the response's language (Content-Language), e.g. "
        "'aum_avg_3m 620,000 >= 500,000'."
    )


class EligibleReason(_Reason):
    """The customer meets this comparison of the product's eligibility condition."""

    code: Literal["ELIGIBLE"]
    value: ConditionResult


class Suitability(BaseModel):
    product_risk: int = Field(description="The product's risk level, 1..5.")
    risk_tolerance: int | None = Field(description="The customer's valid risk tolerance; null without one.")


class SuitableReason(_Reason):
    """The product's risk level is within the customer's risk tolerance."""

    code: Literal["SUITABLE"]
    value: Suitability


class CoHoldingReason(_Reason):
    """Customers with the same products often hold this one."""

    code: Literal["CO_HOLDING"]
    value: float = Field(description="The share of such customers who hold it, 0..1.")


class LearnedPropensityReason(_Reason):
    """Customers of the same tier accepted it when offered."""

    code: Literal["LEARNED_PROPENSITY"]
    value: float = Field(description="The learned acceptance rate (posterior mean), 0..1.")


class WinBackReason(_Reason):
    """The customer held the product before."""

    code: Literal["WIN_BACK"]
    value: date = Field(description="When the customer last held it.")


class TierTargetReason(_Reason):
    """The product is meant for the customer's tier."""

    code: Literal["TIER_TARGET"]
    value: list[str] = Field(description="The tiers the product is meant for.")


class PopularInTierReason(_Reason):
    """Holdout: popular among customers of the same tier."""

    code: Literal["POPULAR_IN_TIER"]
    value: float = Field(description="The share of the tier's customers who hold it, 0..1.")


class ModelFactor(BaseModel):
    factor: str = Field(
        description="What raised the learned model's score most (its top feature contribution), as a reason code: "
        "RANKER_HELD_LAST_MONTH, RANKER_HELD_RECENTLY, RANKER_HOLDS_RELATED, RANKER_PRODUCTS_HELD, "
        "RANKER_RECENTLY_ADDED, RANKER_RECENTLY_DROPPED, RANKER_AGE, RANKER_TENURE, RANKER_ACTIVITY, RANKER_SEGMENT, "
        "RANKER_TIER or RANKER_PROFILE."
    )
    related_product_code: str | None = Field(description="The product held that the factor names, if any.")
    propensity: float = Field(description="The model's calibrated probability that the customer takes it, 0..1.")


class ModelPropensityReason(_Reason):
    """The learned ranker's model ranked it: the top feature of its decision, in words."""

    code: Literal["MODEL_PROPENSITY"]
    value: ModelFactor


Reason = Annotated[
    ModelPropensityReason
    | EligibleReason
    | SuitableReason
    | CoHoldingReason
    | LearnedPropensityReason
    | WinBackReason
    | TierTargetReason
    | PopularInTierReason,
    Field(discriminator="code"),
]


class ProductRef(BaseModel):
    product_code: str
    name: str
    category: ProductCategory
    risk_level: int


class ScoreParts(BaseModel):
    propensity: float = Field(description="Learned acceptance propensity for this customer (0..1).")
    value: float = Field(description="The product's value weight.")
    lever: float = Field(description="The business lever (campaign boost or brake).")


class RecommendationRead(BaseModel):
    recommendation_id: UUID = Field(
        description="Report impressions, clicks, accepts, dismissals and conversions "
        "against this id at POST /v1/feedback/events."
    )
    rank: int
    product: ProductRef
    score: float = Field(description="propensity x value x lever")
    score_parts: ScoreParts
    reasons: list[Reason] = Field(
        description="Why the product is offered, each fact with its value; the kind of value depends on `code`."
    )


class FilteredProduct(BaseModel):
    product_code: str
    filter: FilterReason
    detail: str


FallbackText = Annotated[str, Field(min_length=1, max_length=500, pattern=r"^[^\x00]+$")]  # no NUL: text


class FallbackItem(BaseModel):
    """A service message served instead of an empty list of offers, marked as such: not a product, no feedback."""

    kind: Literal["service_message"]
    code: str = Field(description="The message's code, e.g. TALK_TO_ADVISER.")
    text: str = Field(description="The message in the response's language (Content-Language).")


class FallbackSettings(BaseModel):
    """The fallback of recommendations: whether an empty list carries a service message, and its words."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "enabled": True,
                    "code": "TALK_TO_ADVISER",
                    "texts": {
                        "en": "Nothing new to offer you right now: talk to your adviser about what suits you.",
                        "zh-CN": "目前暂无适合您的新产品推荐，欢迎联系您的客户经理咨询。",
                    },
                }
            ]
        },
    )

    enabled: Boolean = Field(description="true: an empty list carries the message; false: it stays empty.")
    code: Annotated[str, StringConstraints(pattern=r"^[A-Z][A-Z0-9_]{0,39}$")] = Field(
        description="The message's code, for the app to pick an action (e.g. TALK_TO_ADVISER)."
    )
    texts: dict[LanguageTag, FallbackText] = Field(
        min_length=1,
        max_length=20,
        description="The message by language tag (en, zh-CN, ...): the response's language, else the default one.",
        json_schema_extra={"additionalProperties": False},  # keys are language tags (patternProperties) only
    )


class RecommendationsRead(BaseModel):
    """Ranked offers for a customer; report what happens to each by its recommendation_id."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "customer_id": "C00000042",
                    "tier": "wealth",
                    "strategy": "personalised",
                    "items": [
                        {
                            "recommendation_id": "0b8e4c55-6a51-4f0c-9a55-2f0c3b1d7e10",
                            "rank": 1,
                            "product": {
                                "product_code": "fund-balanced-r3",
                                "name": "Balanced Growth Fund",
                                "category": "fund",
                                "risk_level": 3,
                            },
                            "score": 0.4125,
                            "score_parts": {"propensity": 0.125, "value": 2.5, "lever": 1.32},
                            "reasons": [
                                {
                                    "code": "ELIGIBLE",
                                    "text": "aum 620,000.00 >= 25,000",
                                    "value": {
                                        "pointer": "/all/0",
                                        "attribute": "aum",
                                        "operator": "gte",
                                        "threshold": 25000,
                                        "value": "620000.00",
                                        "result": True,
                                    },
                                },
                                {
                                    "code": "LEARNED_PROPENSITY",
                                    "text": "accepted 12 of 96 times offered to wealth customers",
                                    "value": 0.125,
                                },
                                {
                                    "code": "SUITABLE",
                                    "text": "risk R3 <= tolerance 4",
                                    "value": {"product_risk": 3, "risk_tolerance": 4},
                                },
                            ],
                        }
                    ],
                }
            ]
        }
    )

    customer_id: str
    tier: str | None = Field(
        description="The customer's tier under the primary policy, which propensities are learned per."
    )
    strategy: RecommendationStrategy
    items: list[RecommendationRead]
    filtered_out: list[FilteredProduct] | None = Field(
        None, description="With explain=true: every product left out and the filter that removed it."
    )
    fallback: FallbackItem | None = Field(
        None,
        description="Only when `items` is empty (every product filtered out) and the fallback is on: the service "
        "message to show instead (GET /v1/recommendation-fallback).",
    )


LIMIT_MAX = 10
"""The most items a list shows (`limit`)."""


class RecommendationQuery(BaseModel):
    """The query parameters of GET .../recommendations (one model for the route and the hot path; frozen, as the
    hot path shares one instance among the requests with the same query string)."""

    model_config = ConfigDict(frozen=True)

    limit: ParamInteger(1, LIMIT_MAX) = 3
    channel: Channel = "mobile"
    exclude: list[ProductCode] = Field([], max_length=50, description="Codes of products already shown elsewhere.")
    explain: QueryBoolean = Field(False, description="Also list the products filtered out, and why.")
    seed: ParamInteger(0, 2**31) | None = Field(None, description="Makes exploration repeatable.")
    explore: QueryBoolean = Field(True, description="false: rank by posterior means, no sampling.")


class ContactRuleIn(BaseModel):
    """A rule holds while at least N of its outcomes fall within the last W days and the latest is under S days
    old: a rest longer than the window is cut to it (give a dismissal's cooldown a window as long as itself)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=NO_NUL_PATTERN)
    outcome: ContactOutcome = Field(
        description="ignored_impression: shown with no click, accept or conversion (a programme invitation not "
        "answered); dismiss: turned down (an offer, a programme invitation, or a manager's contact declined)."
    )
    threshold: Integer(1, 100) = Field(description="N outcomes ...")
    window_days: Integer(1, 365) = Field(description="... within W days ...")
    scope: ContactScope = Field(
        description="... for the same product or category (an invitation or a manager's contact offers no product: "
        "it counts in every category) ..."
    )
    channel: Channel | None = Field(None, description="... on this channel (null: any) ...")
    suppress_days: Integer(1, 365) = Field(description="... suppress offers for S days.")
    is_active: Boolean = True


class ContactPolicy(BaseModel):
    """The whole contact policy; PUT replaces every rule. Service products are exempt from it."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "rules": [
                        {
                            "name": "ignored-thrice",
                            "outcome": "ignored_impression",
                            "threshold": 3,
                            "window_days": 30,
                            "scope": "product",
                            "channel": None,
                            "suppress_days": 14,
                        },
                        {
                            "name": "dismissed",
                            "outcome": "dismiss",
                            "threshold": 1,
                            "window_days": 60,
                            "scope": "product",
                            "channel": None,
                            "suppress_days": 60,
                        },
                        {
                            "name": "category-fatigue",
                            "outcome": "dismiss",
                            "threshold": 3,
                            "window_days": 90,
                            "scope": "category",
                            "channel": "mobile",
                            "suppress_days": 90,
                        },
                    ]
                }
            ]
        },
    )

    rules: list[ContactRuleIn] = Field(max_length=50)

    @model_validator(mode="after")
    def unique_names(self) -> "ContactPolicy":
        names = [r.name for r in self.rules]
        if len(set(names)) != len(names):
            raise ValueError("rule names must be unique")
        return self
