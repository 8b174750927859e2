"""Feedback request and response bodies: recommendation events, surveys and complaints."""

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from typing_extensions import TypeAliasType

from app.core.errors import validation_errors
from app.core.fields import PositiveMoney
from app.core.strict import NO_NUL_PATTERN, Integer, Timestamp
from app.customers.schemas import CLOCK_SKEW, ExternalId, _not_in_future
from app.products.schemas import ProductCode

FeedbackKind = TypeAliasType(
    "FeedbackEventType",
    Annotated[
        Literal["impression", "click", "accept", "dismiss", "convert"],
        Field(description="What the customer did with a recommended product."),
    ],
)
Channel = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,19}$")]
EventId = Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]  # no NUL: text
SurveyKind = TypeAliasType(
    "SurveyKind",
    Annotated[
        Literal["nps", "csat"], Field(description="nps: 0..10, would you recommend us; csat: 1..5, how satisfied.")
    ],
)
ComplaintCategory = TypeAliasType(
    "ComplaintCategory",
    Annotated[
        Literal["fees", "service", "app", "product", "fraud", "other"], Field(description="What a complaint is about.")
    ],
)
ComplaintStatus = TypeAliasType(
    "ComplaintStatus",
    Annotated[
        Literal["open", "in_progress", "resolved", "closed"], Field(description="Where a complaint is in its life.")
    ],
)
MAX_FEEDBACK_BATCH = 1000


# ---- recommendation feedback -------------------------------------------------------------------------------


class FeedbackEventIn(BaseModel):
    """What the customer did with one recommended product."""

    model_config = ConfigDict(extra="forbid")

    event_id: EventId = Field(description="Your id of the event; a retried event changes nothing.")
    recommendation_id: UUID = Field(description="The recommendation_id of the item the customer responded to.")
    customer_id: ExternalId = Field(description="The bank's external id; must be the customer the item was made to.")
    type: FeedbackKind
    occurred_at: Timestamp = Field(
        description=f"When it happened (not more than {CLOCK_SKEW} ahead of now); "
        "late and out-of-order events count once."
    )
    channel: Channel | None = Field(None, description="Where it happened; default: the channel the list was served on.")
    product_code: ProductCode | None = Field(None, description="Optional: checked against the item's product.")
    amount: PositiveMoney | None = Field(
        None,
        description="A convert's amount (read for converts only): what the customer took, counted against the "
        "product's amount quota, if it has one.",
    )

    @field_validator("occurred_at")
    @classmethod
    def occurred_not_in_future(cls, value: datetime) -> datetime:
        return _not_in_future(value)


class FeedbackEventBatch(BaseModel):
    """1..1000 events (JSON objects). Each is validated on its own: a bad event is reported with its index and
    field, and the good ones are stored."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "event_id": "fb-20261122-000001",
                            "recommendation_id": "0b8e4c55-6a51-4f0c-9a55-2f0c3b1d7e10",
                            "customer_id": "C00000042",
                            "type": "impression",
                            "occurred_at": "2026-11-22T08:14:03Z",
                            "channel": "mobile",
                        },
                        {
                            "event_id": "fb-20261122-000002",
                            "recommendation_id": "0b8e4c55-6a51-4f0c-9a55-2f0c3b1d7e10",
                            "customer_id": "C00000042",
                            "type": "click",
                            "occurred_at": "2026-11-22T08:14:11Z",
                        },
                        {
                            "event_id": "fb-20261122-000003",
                            "recommendation_id": "0b8e4c55-6a51-4f0c-9a55-2f0c3b1d7e10",
                            "customer_id": "C00000042",
                            "type": "convert",
                            "occurred_at": "2026-11-22T08:19:40Z",
                        },
                    ]
                }
            ]
        },
    )

    events: list[FeedbackEventIn | dict[str, Any]] = Field(
        min_length=1,
        max_length=MAX_FEEDBACK_BATCH,
        description="Each item is a FeedbackEventIn. An object that does not conform is rejected alone (listed "
        "under `rejections` with its index and field) while the others are stored.",
    )
    _items: list[tuple[int, FeedbackEventIn]] = PrivateAttr(default_factory=list)
    _rejections: list[dict[str, Any]] = PrivateAttr(default_factory=list)

    @model_validator(mode="wrap")
    @classmethod
    def validate_each_event(cls, data: Any, handler):
        """Validate events one by one: the batch fails only when its shape does (not a list, 0 or >1000 items)."""
        events = data.get("events") if isinstance(data, dict) else None
        if (
            not isinstance(events, list)
            or not 1 <= len(events) <= MAX_FEEDBACK_BATCH
            or set(data) != {"events"}
            or not all(isinstance(item, dict) for item in events)
        ):
            return handler(data)  # the batch's shape is wrong: refused whole, with pointers
        items, rejections = [], []
        for index, raw in enumerate(events):
            try:
                items.append((index, FeedbackEventIn.model_validate(raw)))
            except ValidationError as exc:
                first = validation_errors([{**e, "loc": ("body", "events", index, *e["loc"])} for e in exc.errors()])[0]
                rejections.append({"index": index, "pointer": first["pointer"], "detail": first["detail"]})
        batch = cls.model_construct(events=[event for _, event in items])
        batch._items, batch._rejections = items, rejections
        return batch

    @property
    def indexed_events(self) -> list[tuple[int, FeedbackEventIn]]:
        """(index in the request, event) for every event that passed validation."""
        return self._items

    @property
    def rejections(self) -> list[dict[str, Any]]:
        return self._rejections


class FeedbackRejection(BaseModel):
    index: int = Field(description="Position of the event in the request's `events`.")
    pointer: str = Field(description="JSON pointer to the offending field, e.g. /events/3/recommendation_id.")
    detail: str


class FeedbackBatchResult(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "received": 3,
                    "accepted": 2,
                    "duplicates": 0,
                    "rejected": 1,
                    "rejections": [
                        {"index": 2, "pointer": "/events/2/recommendation_id", "detail": "Input should be a valid UUID"}
                    ],
                }
            ]
        }
    )

    received: int
    accepted: int = Field(description="Events stored by this request (they updated the statistics).")
    duplicates: int = Field(description="Events stored earlier (retries); they changed nothing.")
    rejected: int
    rejections: list[FeedbackRejection]


# ---- surveys -----------------------------------------------------------------------------------------------


class SurveyIn(BaseModel):
    """One survey answer. The comment is the customer's own words: stored and returned, never logged."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            # score_fits_kind, published: a csat score is 1..5 (an nps one 0..10, as `score` says)
            "not": {
                "required": ["kind", "score"],
                "properties": {"kind": {"const": "csat"}, "score": {"not": {"minimum": 1, "maximum": 5}}},
            },
            "examples": [
                {
                    "event_id": "srv-5521-88120",
                    "customer_id": "C00000042",
                    "kind": "nps",
                    "score": 9,
                    "comment": "The new savings goals feature is great.",
                    "channel": "mobile",
                    "touchpoint": "app_rating_prompt",
                    "occurred_at": "2026-11-22T09:30:00Z",
                },
                {
                    "event_id": "srv-5521-88121",
                    "customer_id": "C00000042",
                    "kind": "csat",
                    "score": 4,
                    "channel": "branch",
                    "touchpoint": "mortgage_appointment",
                    "occurred_at": "2026-11-21T15:00:00Z",
                },
            ],
        },
    )

    event_id: EventId = Field(description="Your id of the answer; a retry returns the stored answer.")
    customer_id: ExternalId
    kind: SurveyKind = Field(description="nps: 0..10 (would you recommend us); csat: 1..5 (how satisfied).")
    score: Integer(0, 10)
    comment: str | None = Field(
        None, max_length=2000, pattern=NO_NUL_PATTERN, description="Free text from the customer; never logged."
    )
    channel: Channel
    touchpoint: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,39}$")] = Field(
        description="What the survey was about, e.g. onboarding, branch_visit, app_rating_prompt."
    )
    occurred_at: Timestamp

    @field_validator("occurred_at")
    @classmethod
    def occurred_not_in_future(cls, value: datetime) -> datetime:
        return _not_in_future(value)

    @model_validator(mode="after")
    def score_fits_kind(self) -> "SurveyIn":
        if self.kind == "csat" and not 1 <= self.score <= 5:
            raise ValueError("a csat score is 1..5")
        return self


class SurveyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    event_id: str
    customer_id: str
    kind: SurveyKind
    score: int
    comment: str | None
    channel: str
    touchpoint: str
    occurred_at: datetime
    received_at: datetime


# ---- complaints --------------------------------------------------------------------------------------------


class ComplaintIn(BaseModel):
    """A complaint to open. The description is the customer's own words: stored and returned, never logged."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "event_id": "cmp-2026-11-22-0042",
                    "customer_id": "C00000042",
                    "category": "fees",
                    "channel": "phone",
                    "description": "Charged a foreign transaction fee on a card that advertises none.",
                    "opened_at": "2026-11-22T10:05:00Z",
                }
            ]
        },
    )

    event_id: EventId = Field(description="Your id of the complaint; a retry returns the stored complaint.")
    customer_id: ExternalId
    category: ComplaintCategory
    channel: Channel
    description: str = Field(
        min_length=1, max_length=4000, pattern=NO_NUL_PATTERN, description="Free text; never logged."
    )
    opened_at: Timestamp | None = Field(None, description="When the customer complained; default: now.")

    @field_validator("opened_at")
    @classmethod
    def opened_not_in_future(cls, value: datetime | None) -> datetime | None:
        return _not_in_future(value)


class ComplaintTransitionIn(BaseModel):
    """Move a complaint: open -> in_progress -> resolved -> closed; in_progress, resolved or closed -> open
    (reopen); open -> resolved (resolved at first contact)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"to_status": "resolved", "note": "Fee refunded; card tariff corrected."},
                {"to_status": "open", "note": "Customer reports the fee was charged again."},
            ]
        },
    )

    to_status: ComplaintStatus = Field(description="The status to move the complaint to.")
    note: str | None = Field(None, max_length=2000, pattern=NO_NUL_PATTERN)


class ComplaintTransitionRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    from_status: ComplaintStatus | None
    to_status: ComplaintStatus
    actor: str
    note: str | None
    at: datetime


class ComplaintRead(BaseModel):
    id: int
    event_id: str
    customer_id: str
    category: ComplaintCategory
    channel: str
    description: str
    status: ComplaintStatus
    opened_at: datetime
    resolved_at: datetime | None
    updated_at: datetime


class ComplaintDetail(ComplaintRead):
    history: list[ComplaintTransitionRead] = Field(description="Every move, oldest first; the first is the opening.")
