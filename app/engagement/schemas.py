"""Engagement request and response bodies: communities, memberships, member activity, activities, RSVPs, and the
metrics and results reports."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator
from typing_extensions import TypeAliasType

from app.core.strict import Integer, Timestamp
from app.customers.schemas import ExternalId, _not_in_future
from app.reports.schemas import Uplift
from app.rules.schema import Condition


def _not_null(value: Any) -> Any:
    """For a PATCH field that may be left out but not set to null."""
    if value is None:
        raise ValueError("must not be null; omit the field to keep its current value")
    return value


ProgrammeKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{1,39}$")]
# An activity's surveys carry the touchpoint `activity_<key>` (the feedback domain's touchpoint pattern).
ActivityKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_]{1,30}$")]
TierCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$")]
PolicyKey = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,39}$")]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=r"\S", max_length=200)]
Team = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, pattern=r"\S", max_length=100)]
ContactChannel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,19}$")]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=100)]
BenefitCode = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_\-]{0,59}$")]
MAX_BATCH = 1000

CommunityState = TypeAliasType(
    "CommunityState",
    Annotated[Literal["planned", "open", "closed"], Field(description="planned: no invitations yet; open; closed.")],
)
MembershipState = TypeAliasType(
    "MembershipState",
    Annotated[
        Literal["invited", "joined", "left", "declined", "removed"],
        Field(description="invited -> joined -> left; invited -> declined; invited or joined -> removed."),
    ],
)
MemberActivityKind = TypeAliasType(
    "MemberActivityKind",
    Annotated[Literal["post", "reply", "meeting_attended", "share"], Field(description="What a member did.")],
)
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

MembershipAnswer = TypeAliasType(
    "MembershipAnswer",
    Annotated[
        Literal["joined", "declined", "left"],
        Field(
            description="The move: joined or declined (from invited), left (from joined). A removal is the bank's: "
            "DELETE /v1/communities/{community_key}/members/{customer_id}."
        ),
    ],
)
RsvpAnswer = TypeAliasType(
    "RsvpAnswer", Annotated[Literal["accept", "decline"], Field(description="The customer's answer.")]
)
ReferralMove = TypeAliasType(
    "ReferralMove",
    Annotated[Literal["onboarded", "active"], Field(description="onboarded (from referred), active (converted).")],
)

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


class _Audience(BaseModel):
    audience: Condition = Field(description=AUDIENCE_DOC)
    audience_policy_key: PolicyKey | None = Field(None, description="The tier policy `audience_tiers` name tiers of.")
    audience_tiers: Annotated[list[TierCode], Field(max_length=50)] = Field(default_factory=list, description=TIERS_DOC)

    @model_validator(mode="after")
    def tiers_with_policy(self):
        if bool(self.audience_policy_key) != bool(self.audience_tiers):
            raise ValueError("audience_policy_key and audience_tiers go together")
        return self


# ---- communities -------------------------------------------------------------------------------------------


class CommunityCreate(_Audience):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "key": "young-families",
                    "name": "Young families",
                    "goal": "Saving and insuring for a growing family",
                    "owner_team": "retail-engagement",
                    "audience": AUDIENCE_EXAMPLE,
                    "audience_policy_key": "loyalty",
                    "audience_tiers": ["iron_fan", "core"],
                    "capacity": 500,
                    "state": "open",
                }
            ]
        },
    )

    key: ProgrammeKey = Field(description="Stable identifier: lowercase letters, digits, '_' and '-', 2..40.")
    name: Name
    goal: Annotated[str, Field(max_length=2000)] | None = None
    owner_team: Team
    capacity: Integer(1, 10_000_000) | None = Field(None, description="Most members at once; null: no limit.")
    state: CommunityState = "planned"


class CommunityUpdate(BaseModel):
    """Fields to change; the audience's three fields are replaced together when `audience` is sent."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"state": "open"}, {"capacity": 800, "goal": "Grow"}]}
    )

    # name, owner_team, audience and state may be left out, not set to null (their types have no null)
    name: Name = None
    goal: Annotated[str, Field(max_length=2000)] | None = None
    owner_team: Team = None
    audience: Condition = Field(None, description=AUDIENCE_DOC)
    audience_policy_key: PolicyKey | None = None
    audience_tiers: Annotated[list[TierCode], Field(max_length=50)] | None = None
    capacity: Integer(1, 10_000_000) | None = None
    state: CommunityState = None

    @field_validator("name", "owner_team", "audience", "state", mode="before")
    @classmethod
    def not_null(cls, value: Any) -> Any:
        return _not_null(value)


class CommunityRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    key: str
    name: str
    goal: str | None
    owner_team: str
    audience: dict[str, Any]
    audience_policy_key: str | None
    audience_tiers: list[str]
    capacity: int | None
    state: CommunityState
    created_at: datetime
    updated_at: datetime


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


class MembershipMoveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"to_state": "joined", "channel": "mobile"}]}
    )

    to_state: MembershipAnswer
    channel: ContactChannel
    at: Timestamp | None = Field(None, description="When it happened; default now.")

    @field_validator("at")
    @classmethod
    def at_not_in_future(cls, value: datetime | None) -> datetime | None:
        return _not_in_future(value)


class MembershipMoveRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_state: MembershipState | None
    to_state: MembershipState
    channel: str
    at: datetime


class MembershipRead(BaseModel):
    customer_id: str
    community_key: str
    state: MembershipState
    channel: str
    invited_at: datetime
    joined_at: datetime | None
    ended_at: datetime | None
    history: list[MembershipMoveRead] = Field(default_factory=list)


class MemberActivityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: EventId = Field(description="Your id of the event; a retried event changes nothing.")
    customer_id: ExternalId
    kind: MemberActivityKind
    occurred_at: Timestamp

    @field_validator("occurred_at")
    @classmethod
    def occurred_not_in_future(cls, value: datetime) -> datetime:
        return _not_in_future(value)


class MemberActivityBatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "yf-post-000001",
                            "customer_id": "C00000042",
                            "kind": "post",
                            "occurred_at": "2026-11-22T08:14:03Z",
                        }
                    ]
                }
            ]
        },
    )

    events: Annotated[list[MemberActivityIn], Field(min_length=1, max_length=MAX_BATCH)]


class BatchRejection(BaseModel):
    index: int
    pointer: str
    detail: str


class MemberActivityResult(BaseModel):
    received: int
    accepted: int
    duplicates: int
    rejected: int
    rejections: list[BatchRejection]


class Satisfaction(BaseModel):
    customers: int = Field(description="Customers in the group.")
    nps_responses: int
    nps: float | None = Field(description="% promoters - % detractors of the latest answer per customer in the window.")
    csat_responses: int
    csat_avg: float | None


class MemberTierMigration(BaseModel):
    from_tier: str | None
    to_tier: str
    direction: str
    customers: int


class CommunityMetrics(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    community_key: str
    from_: datetime = Field(alias="from")
    to: datetime
    members: int = Field(description="Members at `to`.")
    joins: int = Field(description="Joins in [from, to).")
    leaves: int = Field(description="Leaves and removals in [from, to).")
    active_members_30d: int = Field(description="Members at `to` with an activity event in the 30 days before it.")
    stickiness: float | None = Field(description="active_members_30d / members.")
    tier_policy: str | None = Field(description="The policy whose tiers the comparison and migrations use.")
    members_satisfaction: Satisfaction
    non_members_satisfaction: Satisfaction = Field(
        description="Customers who are not members and have one of the members' tiers under `tier_policy`."
    )
    tier_migrations: list[MemberTierMigration] = Field(
        description="Members' tier moves under `tier_policy` since each joined, up to `to`."
    )


# ---- activities --------------------------------------------------------------------------------------------


class ActivityCreate(_Audience):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
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
            ]
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
        description="Codes of the benefit catalogue's benefits the activity grants (kept as codes, not checked).",
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
        return _not_null(value)


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


# ---- referrals ---------------------------------------------------------------------------------------------

ReferralStatus = TypeAliasType(
    "ReferralStatus",
    Annotated[
        Literal["referred", "onboarded", "active"],
        Field(description="referred -> onboarded (the referee became a customer) -> active (converted)."),
    ],
)
ReferralCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{3,39}$")]


class ReferralIn(BaseModel):
    """A referral: the referee is another customer (`referee_customer_id`) or a pending `referral_code`."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "ref-000001",
                    "referrer_customer_id": "C00000042",
                    "referral_code": "FRIEND-7QX2",
                    "referred_at": "2026-11-22T08:14:03Z",
                }
            ]
        },
    )

    event_id: EventId = Field(description="Your id of the referral; a retry changes nothing.")
    referrer_customer_id: ExternalId
    referee_customer_id: ExternalId | None = None
    referral_code: ReferralCode | None = None
    referred_at: Timestamp

    @field_validator("referred_at")
    @classmethod
    def referred_not_in_future(cls, value: datetime) -> datetime:
        return _not_in_future(value)

    @model_validator(mode="after")
    def one_referee(self):
        if (self.referee_customer_id is None) == (self.referral_code is None):
            raise ValueError("name the referee by referee_customer_id or by referral_code, one of them")
        return self


class ReferralMoveIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"to_status": "onboarded", "referee_customer_id": "C00000043"}, {"to_status": "active"}]
        },
    )

    to_status: ReferralMove
    referee_customer_id: ExternalId | None = Field(
        None, description="The referee, when the referral named a code: the customer the code brought in."
    )
    at: Timestamp | None = Field(None, description="When; default now.")

    @field_validator("at")
    @classmethod
    def at_not_in_future(cls, value: datetime | None) -> datetime | None:
        return _not_in_future(value)


class ReferralRead(BaseModel):
    id: int
    event_id: str
    referrer_customer_id: str
    referee_customer_id: str | None
    referral_code: str | None
    status: ReferralStatus
    referred_at: datetime
    onboarded_at: datetime | None
    activated_at: datetime | None
