"""Community bodies: the community document, membership moves, member activity and the metrics report."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypeAliasType

from app.core.strict import NO_NUL_PATTERN, Integer, Timestamp
from app.customers.schemas import ExternalId, _not_in_future
from app.engagement.schemas.common import (
    AUDIENCE_DOC,
    AUDIENCE_EXAMPLE,
    AUDIENCE_RULE,
    MAX_BATCH,
    AudienceFields,
    BatchRejection,
    ContactChannel,
    EventId,
    Name,
    PolicyKey,
    ProgrammeKey,
    Satisfaction,
    Team,
    TierCode,
    not_null,
)
from app.rules.schema import Condition

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


class CommunityCreate(AudienceFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            **AUDIENCE_RULE,
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
            ],
        },
    )

    key: ProgrammeKey = Field(description="Stable identifier: lowercase letters, digits, '_' and '-', 2..40.")
    name: Name
    goal: Annotated[str, Field(max_length=2000, pattern=NO_NUL_PATTERN)] | None = None
    owner_team: Team
    capacity: Integer(1, 10_000_000) | None = Field(None, description="Most members at once; null: no limit.")
    state: CommunityState = "planned"


_POLICY_AND_TIERS = ("audience_policy_key", "audience_tiers")


class CommunityUpdate(BaseModel):
    """Fields to change; the audience's three fields are replaced together when `audience` is sent."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"state": "open"}, {"capacity": 800, "goal": "Grow"}],
            # the audience's policy and tiers come only with the audience, and together (update_community)
            "not": {
                "anyOf": [
                    *({"required": [field], "not": {"required": ["audience"]}} for field in _POLICY_AND_TIERS),
                    *AUDIENCE_RULE["not"]["anyOf"],
                ]
            },
        },
    )

    # name, owner_team, audience and state may be left out, not set to null (their types have no null)
    name: Name = None
    goal: Annotated[str, Field(max_length=2000, pattern=NO_NUL_PATTERN)] | None = None
    owner_team: Team = None
    audience: Condition = Field(None, description=AUDIENCE_DOC)
    audience_policy_key: PolicyKey | None = None
    audience_tiers: Annotated[list[TierCode], Field(max_length=50)] | None = None
    capacity: Integer(1, 10_000_000) | None = None
    state: CommunityState = None

    @field_validator("name", "owner_team", "audience", "state", mode="before")
    @classmethod
    def not_null(cls, value: Any) -> Any:
        return not_null(value)


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


class MemberActivityResult(BaseModel):
    received: int
    accepted: int
    duplicates: int
    rejected: int
    rejections: list[BatchRejection]


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
