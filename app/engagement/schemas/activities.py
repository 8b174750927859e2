"""Activity bodies: the activity document, RSVPs, attendance, participations and the results report."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from typing_extensions import TypeAliasType

from app.core.strict import Integer, Timestamp
from app.customers.schemas import ExternalId
from app.engagement.schemas.common import (
    AUDIENCE_RULE,
    MAX_BATCH,
    AudienceFields,
    BatchRejection,
    ContactChannel,
    Name,
    Satisfaction,
    Team,
    not_null,
)
from app.reports.schemas import Uplift

# An activity's surveys carry the touchpoint `activity_<key>` (the feedback domain's touchpoint pattern).
ActivityKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{1,30}$")]
BenefitCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,59}$")]

ActivityKind = TypeAliasType(
    "ActivityKind",
    Annotated[
        Literal["salon", "lecture", "appreciation_event", "campaign"],
        Field(description="salon (investment salon), lecture (financial education), appreciation_event, campaign."),
    ],
)
ActivityChannel = TypeAliasType(
    "ActivityChannel", Annotated[Literal["branch", "online"], Field(description="Where the activity takes place.")]
)
ParticipationState = TypeAliasType(
    "ParticipationState",
    Annotated[
        Literal["invited", "accepted", "waitlisted", "declined", "attended", "no_show"],
        Field(description="invited -> accepted (or waitlisted when full) -> attended / no_show; or declined."),
    ],
)
RsvpAnswer = TypeAliasType(
    "RsvpAnswer", Annotated[Literal["accept", "decline"], Field(description="The customer's answer.")]
)


class ActivityCreate(AudienceFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            **AUDIENCE_RULE,
            "examples": [
                {
                    "key": "lecture_2027_01",
                    "name": "Pensions explained",
                    "kind": "lecture",
                    "owner_team": "wealth-engagement",
                    "audience": {"attr": "aum_avg_3m", "op": "gte", "value": 50000},
                    "channel": "branch",
                    "capacity": 40,
                    "starts_at": "2026-12-18T17:00:00Z",
                    "ends_at": "2026-12-18T19:00:00Z",
                    "benefit_codes": ["airport-lounge"],
                }
            ],
        },
    )

    key: ActivityKey = Field(
        description="Stable identifier: lowercase letters, digits and '_', 2..31. Surveys about the activity carry "
        "the touchpoint `activity_<key>`."
    )
    name: Name
    kind: ActivityKind
    owner_team: Team
    channel: ActivityChannel
    capacity: Integer(1, 1_000_000) = Field(description="Places; accepted RSVPs beyond it go to the waiting list.")
    starts_at: Timestamp
    ends_at: Timestamp
    benefit_codes: Annotated[list[BenefitCode], Field(max_length=20)] = Field(
        default_factory=list,
        description="Codes of the benefit catalogue's benefits the activity grants (GET /v1/benefits); a code not "
        "in the catalogue is a 422 naming it (/benefit_codes/<index>).",
    )

    @model_validator(mode="after")
    def ends_after_start(self):
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class ActivityUpdate(BaseModel):
    """Fields to change: name, owner team, capacity, schedule, benefit codes."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"capacity": 60}]})

    # each may be left out, not set to null (their types have no null)
    name: Name = None
    owner_team: Team = None
    capacity: Integer(1, 1_000_000) = None
    starts_at: Timestamp = None
    ends_at: Timestamp = None
    benefit_codes: Annotated[list[BenefitCode], Field(max_length=20)] = None

    @field_validator("*", mode="before")
    @classmethod
    def not_null(cls, value: Any) -> Any:
        return not_null(value)


class ActivityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    name: str
    kind: ActivityKind
    owner_team: str
    audience: dict[str, Any]
    audience_policy_key: str | None
    audience_tiers: list[str]
    channel: ActivityChannel
    capacity: int
    starts_at: datetime
    ends_at: datetime
    benefit_codes: list[str]
    created_at: datetime
    updated_at: datetime


class RsvpIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"answer": "accept", "channel": "mobile"}]}
    )

    answer: RsvpAnswer
    channel: ContactChannel


class AttendanceIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customer_id: ExternalId
    attended: bool


class AttendanceBatch(BaseModel):
    """Who came: each accepted participant marked attended or no_show (a correction may flip one)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"records": [{"customer_id": "C00000042", "attended": True}]}]},
    )

    records: Annotated[list[AttendanceIn], Field(min_length=1, max_length=MAX_BATCH)]


class AttendanceResult(BaseModel):
    attended: int
    no_show: int
    rejected: int
    rejections: list[BatchRejection]


class ParticipationRead(BaseModel):
    customer_id: str
    activity_key: str
    state: ParticipationState
    channel: str
    invited_at: datetime
    responded_at: datetime | None
    waitlisted_at: datetime | None
    attended_at: datetime | None


class ActivityResults(BaseModel):
    activity_key: str
    invited: int
    accepted: int = Field(description="Who accepted a place (attended and no-shows included).")
    waitlisted: int
    declined: int
    attended: int
    no_show: int
    satisfaction: Satisfaction = Field(description="Surveys whose touchpoint is `activity_<key>`.")
    days: int = Field(description="The window after attending in which a product taken counts.")
    attendees_compared: int = Field(description="Attendees in a stratum that has not-invited customers.")
    attendees_taking_products: int
    attendee_rate: float | None
    control_customers: int = Field(description="Not-invited customers of the audience in the attendees' strata.")
    control_rate: float | None = Field(description="Their rate, weighted to the attendees' strata.")
    uplift: Uplift | None = Field(
        description="Attendees' rate minus the matched group's (the treatment and holdout of the funnel's Uplift)."
    )
    matching: str = Field(description="How the not-invited group was matched.")
