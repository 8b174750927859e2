"""Engagement bodies every programme shares: names and keys, the audience, invitation batches, batch rejections
and satisfaction (the communities' metrics and the activities' results)."""

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from typing_extensions import TypeAliasType

from app.core.strict import Text, both_or_neither
from app.customers.schemas import ExternalId
from app.rules.schema import Condition

ProgrammeKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{1,39}$")]
TierCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$")]
PolicyKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,39}$")]
Name = Text(200)
Team = Text(100)
ContactChannel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,19}$")]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]  # no NUL: text
MAX_BATCH = 1000

AUDIENCE_DOC = (
    "Who may be invited: a condition in the rule language (GET /v1/attributes), e.g. "
    '{"all": [{"attr": "age", "op": "lt", "value": 35}]}; {"always": true} for everyone.'
)
TIERS_DOC = (
    "Optional: only customers whose tier under `audience_policy_key` is one of these, e.g. loyalty in "
    "[iron_fan, core]. Both or neither."
)
AUDIENCE_EXAMPLE = {
    "all": [{"attr": "age", "op": "lt", "value": 35}, {"attr": "marketing_consent", "op": "eq", "value": True}]
}


AUDIENCE_RULE = both_or_neither("audience_policy_key", "audience_tiers", unset_second={"maxItems": 0})
"""The rule tiers_with_policy checks, published (json_schema_extra of each body with the audience fields)."""


class AudienceFields(BaseModel):
    """The audience fields of a programme's create body."""

    model_config = ConfigDict(json_schema_extra=AUDIENCE_RULE)  # a subclass with examples repeats it

    audience: Condition = Field(description=AUDIENCE_DOC)
    audience_policy_key: PolicyKey | None = Field(None, description="The tier policy `audience_tiers` name tiers of.")
    audience_tiers: Annotated[list[TierCode], Field(max_length=50)] = Field(default_factory=list, description=TIERS_DOC)

    @model_validator(mode="after")
    def tiers_with_policy(self):
        if bool(self.audience_policy_key) != bool(self.audience_tiers):
            raise ValueError("audience_policy_key and audience_tiers go together")
        return self


class InvitationBatch(BaseModel):
    """Customers to invite (1..1000). Each is invited only when the audience admits them, they consent to
    marketing and the contact policy does not suppress them; the others are listed with the reason."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"customer_ids": ["C00000042", "C00000043"], "channel": "mobile"}]},
    )

    customer_ids: Annotated[list[ExternalId], Field(min_length=1, max_length=MAX_BATCH)]
    channel: ContactChannel = Field(description="Where the invitation is sent (mobile, email, branch, rm, ...).")


InvitationOutcome = TypeAliasType(
    "InvitationOutcome",
    Annotated[
        Literal[
            "invited",
            "unknown_customer",
            "not_in_audience",
            "no_marketing_consent",
            "contact_policy",
            "already_invited",
        ],
        Field(description="What became of one customer of an invitation batch."),
    ],
)


class InvitationResult(BaseModel):
    customer_id: str
    outcome: InvitationOutcome
    contact_rule: str | None = Field(None, description="The contact rule that suppressed the invitation.")


class InvitationBatchResult(BaseModel):
    invited: int
    skipped: int
    results: list[InvitationResult]


class BatchRejection(BaseModel):
    index: int
    pointer: str
    detail: str


class Satisfaction(BaseModel):
    customers: int = Field(description="Customers in the group.")
    nps_responses: int
    nps: float | None = Field(description="% promoters - % detractors of the latest answer per customer in the window.")
    csat_responses: int
    csat_avg: float | None


def not_null(value: Any) -> Any:
    """For a PATCH field that may be left out but not set to null."""
    if value is None:
        raise ValueError("must not be null; omit the field to keep its current value")
    return value
