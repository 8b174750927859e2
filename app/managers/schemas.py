"""Relationship-manager request and response bodies: managers, a customer's manager and its history, assignment
runs, the coverage report and contacts."""

from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator
from typing_extensions import TypeAliasType

from app.core.strict import NO_NUL_PATTERN, Boolean, Day, Integer, Text, Timestamp

ManagerId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,39}$")]
PolicyKey = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_\-]{1,39}$")]
TierCode = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$")]
Name = Text(200)
Team = Text(100)
Reason = Text(1000)
Capacity = Integer(0, 100000, description="How many customers the manager can look after.")

AssignmentSource = TypeAliasType(
    "AssignmentSource",
    Annotated[Literal["run", "manual"], Field(description="How the customer got the manager: a run or by hand.")],
)
AssignmentAction = TypeAliasType(
    "AssignmentAction",
    Annotated[
        Literal["assigned", "reassigned", "released"],
        Field(description="assigned by a run, reassigned by hand (with a reason), released (left the served tiers)."),
    ],
)
ContactKind = TypeAliasType(
    "ContactKind",
    Annotated[Literal["call", "visit", "message"], Field(description="A call, a visit or a message.")],
)
ContactChannel = TypeAliasType(
    "ContactChannel",
    Annotated[
        Literal["phone", "branch", "video", "mobile", "email", "sms", "wechat"],
        Field(description="Where the contact took place."),
    ],
)
ContactOutcome = TypeAliasType(
    "ManagerContactOutcome",
    Annotated[
        Literal["reached", "no_answer", "callback_requested", "declined", "follow_up"],
        Field(description="What came of it."),
    ],
)


class ServedTiers(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy_key: PolicyKey = Field(examples=["wealth"])
    tiers: list[TierCode] = Field(min_length=1, max_length=20, examples=[["private", "wealth"]])


class ManagerCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "manager_id": "RM010",
                    "name": "Li Wei",
                    "team": "wealth-east",
                    "serves": {"policy_key": "wealth", "tiers": ["private", "wealth"]},
                    "capacity": 150,
                }
            ]
        },
    )

    manager_id: ManagerId = Field(description="The bank's own id for the manager.", examples=["RM001"])
    name: Name = Field(examples=["Li Wei"])
    team: Team = Field(examples=["wealth-east"])
    serves: ServedTiers
    capacity: Capacity


class ManagerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"capacity": 180}]})

    # Each may be left out, not set to null: the schema says so (no null in their types) and null is refused.
    name: Name = None
    team: Team = None
    serves: ServedTiers = None
    capacity: Capacity = None
    is_active: Boolean = Field(None, description="false: no new customers; the next run releases theirs.")

    @field_validator("name", "team", "serves", "capacity", "is_active", mode="before")
    @classmethod
    def not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may not be null; omit the field to keep its current value")
        return value


class ManagerRead(BaseModel):
    manager_id: str
    name: str
    team: str
    serves: ServedTiers
    capacity: int
    is_active: bool
    created_at: datetime
    updated_at: datetime


class CustomerManager(BaseModel):
    customer_id: str
    manager: ManagerRead | None = Field(description="Null when nobody serves the customer now.")
    policy_key: str | None = None
    tier: str | None = Field(None, description="The tier the customer is served for.")
    source: AssignmentSource | None = None
    assigned_at: datetime | None = None


class Reassignment(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"manager_id": "RM002", "reason": "Asked for a manager at the downtown branch."}]
        },
    )

    manager_id: ManagerId = Field(examples=["RM002"])
    reason: Reason = Field(examples=["Customer asked for a Mandarin-speaking manager."])


class AssignmentChange(BaseModel):
    id: int
    customer_id: str
    action: AssignmentAction
    manager_id: str | None
    previous_manager_id: str | None
    run_id: int | None
    reason: str | None
    actor: str
    at: datetime


class AssignmentRunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{}]})


class AssignmentRunRead(BaseModel):
    id: int
    actor: str
    kept: int = Field(description="Assignments kept: the customer still holds a tier their manager serves.")
    released: int = Field(description="Customers released: no longer in a tier their manager serves.")
    assigned: int = Field(description="Customers newly assigned.")
    unassigned: int = Field(description="Eligible customers left without a manager (no capacity left).")
    started_at: datetime
    finished_at: datetime | None


class TierCoverage(BaseModel):
    policy_key: str
    tier: str
    customers: int = Field(description="Customers holding the tier now.")
    with_manager: int
    share: float = Field(description="with_manager / customers (0 when the tier is empty).")


class ManagerCoverage(BaseModel):
    manager_id: str
    team: str
    capacity: int
    load: int
    utilisation: float = Field(description="load / capacity (0 when capacity is 0).")


class CoverageReport(BaseModel):
    tiers: list[TierCoverage]
    managers: list[ManagerCoverage]


class ContactCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"kind": "call", "channel": "phone", "outcome": "reached", "note": "Discussed the term deposit."}
            ]
        },
    )

    kind: ContactKind
    channel: ContactChannel
    outcome: ContactOutcome
    note: Annotated[str, Field(max_length=4000, pattern=NO_NUL_PATTERN)] | None = Field(
        None, description="Free text (personal data: never logged, erased with the customer)."
    )
    manager_id: ManagerId | None = Field(None, description="Who made the contact; default: the customer's manager.")
    contacted_at: Timestamp | None = Field(None, description="When; default: now.")


class ContactRead(BaseModel):
    id: int
    customer_id: str
    manager_id: str | None
    kind: ContactKind
    channel: ContactChannel
    outcome: ContactOutcome
    note: str | None
    contacted_at: datetime
    recorded_by: str


TaskKind = TypeAliasType(
    "TaskKind",
    Annotated[
        Literal[
            "downgrade_at_risk",
            "cadence_overdue",
            "care_date",
            "complaint_overdue",
            "near_miss_upgrade",
            "gone_quiet",
        ],
        Field(
            description="Why the task exists: a downgrade at risk (in its grace), a contact cadence overdue, a care "
            "date (birthday, anniversary, holiday), a complaint open past its SLA, a near-miss upgrade, a valuable "
            "customer gone quiet."
        ),
    ],
)
TaskClosing = TypeAliasType(
    "TaskClosing",
    Annotated[
        Literal["done", "snoozed", "dismissed"],
        Field(description="How a task is closed: done or dismissed (with an outcome), or snoozed until a day."),
    ],
)
TaskState = TypeAliasType(
    "TaskState",
    Annotated[
        Literal["open", "done", "snoozed", "dismissed"],
        Field(description="open; done or dismissed (with an outcome); snoozed until a day."),
    ],
)


class CadenceSet(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"days": 30}]})

    days: Integer(1, 3650, description="A contact every this many days.")


class CadenceRead(BaseModel):
    policy_key: str
    tier: str
    days: int
    updated_at: datetime


class TaskRead(BaseModel):
    id: int
    customer_id: str
    kind: TaskKind
    reason: str
    due_on: date
    state: TaskState
    snoozed_until: date | None
    outcome: str | None
    closed_by: str | None
    closed_at: datetime | None
    contact_id: int | None = Field(None, description="The contact recorded when the task was done.")


class TaskContact(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ContactKind
    channel: ContactChannel
    outcome: ContactOutcome


class TaskUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # published as the route checks them: snoozed_until only with snoozed, contact only with done
            "not": {
                "anyOf": [
                    {
                        "required": [field],
                        "properties": {field: {"not": {"type": "null"}}, "state": {"not": {"const": state}}},
                    }
                    for field, state in (("snoozed_until", "snoozed"), ("contact", "done"))
                ]
                + [
                    {
                        "required": ["state"],
                        "properties": {"state": {"const": "snoozed"}, "snoozed_until": {"type": "null"}},
                    }
                ]
            },
            "examples": [
                {
                    "state": "done",
                    "outcome": "Called; moving savings to a term deposit.",
                    "contact": {"kind": "call", "channel": "phone", "outcome": "reached"},
                }
            ],
        },
    )

    state: TaskClosing
    outcome: Reason = Field(description="What came of it (free text: erased with the customer).")
    snoozed_until: Day | None = Field(None, description="With `snoozed`: the day the task comes back.")
    contact: TaskContact | None = Field(
        None,
        description="With `done`: the contact that did it, recorded in the contact log (counting toward the "
        "cadence) by the customer's manager, now.",
    )
