"""Intake bodies: activity event batches, and the bulk customer and holdings imports' lines and results."""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError, field_validator
from typing_extensions import TypeAliasType

from app.core.fields import PositiveMoney
from app.core.strict import NO_NUL_PATTERN, TIME_PATTERN, Timestamp
from app.customers.schemas import (
    CLOCK_SKEW,
    EXTERNAL_ID_PATTERN,
    ExternalId,
    HoldingIn,
    LoginChannel,
    TransactionChannel,
    TransactionDirection,
    _not_in_future,
)


class EventBase(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: str = Field(
        min_length=1, max_length=100, pattern=NO_NUL_PATTERN, description="The sender's id; a retried event is ignored."
    )
    customer_id: ExternalId = Field(description="The bank's external id of the customer.")
    occurred_at: Timestamp

    @field_validator("occurred_at")
    @classmethod
    def occurred_not_in_future(cls, value):
        return _not_in_future(value)


class TransactionEvent(EventBase):
    type: Literal["transaction"]
    amount: PositiveMoney = Field(description="The amount moved, greater than 0: a decimal string.")
    direction: TransactionDirection
    channel: TransactionChannel


class LoginEvent(EventBase):
    type: Literal["login"]
    channel: LoginChannel = "mobile"


class ReferralEvent(EventBase):
    """This customer brought in a new customer."""

    type: Literal["referral"]


Event = Annotated[TransactionEvent | LoginEvent | ReferralEvent, Field(discriminator="type")]


class EventBatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "events": [
                        {
                            "type": "transaction",
                            "event_id": "txn-2026-11-22-000981",
                            "customer_id": "C00000042",
                            "occurred_at": "2026-11-22T08:14:03Z",
                            "amount": "54.90",
                            "direction": "debit",
                            "channel": "card",
                        },
                        {
                            "type": "login",
                            "event_id": "login-88120391",
                            "customer_id": "C00000042",
                            "occurred_at": "2026-11-22T08:10:41Z",
                            "channel": "mobile",
                        },
                        {
                            "type": "referral",
                            "event_id": "ref-77120",
                            "customer_id": "C00000042",
                            "occurred_at": "2026-11-21T17:02:00Z",
                        },
                    ]
                }
            ]
        },
    )

    events: list[Event] = Field(min_length=1, max_length=10_000)


# The per-event Python validators above (a time's pattern, years and future check, the amount's pattern) were two
# thirds of a batch's validation (bench/RESULTS.md, events20d): a batch is first checked against the same shape
# with every check in pydantic-core (the patterns as constraints: Rust's `$` ends the text, Python's also allows a
# final newline, so these accept less) and the future check done once per batch; anything this refuses, or cannot
# decide, is validated again by EventBatch, whose 422 is what the client sees. What it accepts, EventBatch accepts.
_AMOUNT_PATTERN = next(m.json_schema["pattern"] for m in PositiveMoney.__metadata__ if hasattr(m, "json_schema"))
_FAST = ConfigDict(extra="forbid", strict=True)


class _CheckedEvent(BaseModel):
    model_config = _FAST

    event_id: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=NO_NUL_PATTERN)]
    customer_id: Annotated[str, StringConstraints(pattern=EXTERNAL_ID_PATTERN)]
    occurred_at: Annotated[str, StringConstraints(pattern=TIME_PATTERN)]  # the years are in the pattern


class _CheckedTransaction(_CheckedEvent):
    type: Literal["transaction"]
    amount: Annotated[str, StringConstraints(pattern=_AMOUNT_PATTERN)]
    direction: Literal["credit", "debit"]
    channel: Literal["mobile", "web", "branch", "atm", "card", "transfer"]


class _CheckedLogin(_CheckedEvent):
    type: Literal["login"]
    channel: Literal["mobile", "web"] = "mobile"


class _CheckedReferral(_CheckedEvent):
    type: Literal["referral"]


class CheckedEventBatch(BaseModel):
    """A batch that EventBatch accepts, checked without per-event Python; its times are the texts sent, each with
    an offset Postgres reads (app.customers.events reads the events from the request's JSON)."""

    model_config = _FAST

    events: list[Annotated[_CheckedTransaction | _CheckedLogin | _CheckedReferral, Field(discriminator="type")]] = (
        Field(min_length=1, max_length=10_000)
    )


_CHECKED = TypeAdapter(CheckedEventBatch)
_POSTGRES_OFFSET_HOURS = 16  # RFC 3339 allows offsets to +-23:59; Postgres reads them to +-15:59


def _times_fit(times: list[str]) -> bool:
    """None of `times` (TIME_PATTERN's texts) in the future past the clock skew, each with an offset Postgres reads;
    False also when undecided (a text datetime.fromisoformat does not read: EventBatch decides)."""
    now = datetime.now(UTC)
    # a day written two days before today's in UTC is in the past whatever its offset (at most 23:59)
    settled = (now - timedelta(days=2)).date().isoformat()
    for written in times:
        if written[-1] not in "Zz" and abs(int(written[-6:-3])) >= _POSTGRES_OFFSET_HOURS:  # "+HH:MM" / "-HH:MM"
            return False
        if written[:10] > settled:
            try:
                if datetime.fromisoformat(written) > now + CLOCK_SKEW:
                    return False
            except ValueError:
                return False
    return True


def checked_event_batch(value: Any, validate) -> CheckedEventBatch | EventBatch:
    """The request body's wrap validator (app.customers.router): a CheckedEventBatch when the fast check accepts
    `value`, otherwise EventBatch's validation (`validate`), with its errors."""
    try:
        checked = _CHECKED.validate_python(value)
    except ValidationError:
        return validate(value)
    if not _times_fit([e.occurred_at for e in checked.events]):
        return validate(value)
    return checked


class EventBatchResult(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"received": 3, "recorded": 2, "duplicates": 1}]})

    received: int
    recorded: int = Field(description="Events stored by this request.")
    duplicates: int = Field(description="Events already stored earlier (retries); they changed nothing.")


class ImportRejection(BaseModel):
    line: int
    pointer: str | None = None
    detail: str


class ImportResult(BaseModel):
    accepted: int
    created: int
    updated: int
    rejected: int
    rejections: list[ImportRejection]


class HoldingImportLine(HoldingIn):
    """One line of POST /v1/holdings/import: one holding of one customer. A customer's lines in a file are their
    complete product set, as PUT /v1/customers/{customer_id}/holdings takes it; products left out are closed."""

    model_config = ConfigDict(extra="forbid")

    customer_id: ExternalId


HoldingImportFormat = TypeAliasType(
    "HoldingImportFormat",
    Annotated[Literal["ndjson", "csv"], Field(description="The file's format, from the request's Content-Type.")],
)
HoldingImportStatus = TypeAliasType(
    "HoldingImportStatus",
    Annotated[
        Literal["merging", "succeeded", "failed"],
        Field(
            description="merging: chunks are being merged (or were, when the import stopped: send the file again "
            "to resume); succeeded: every chunk is merged; failed: a chunk failed, send the file again to resume."
        ),
    ],
)


class HoldingImportRead(BaseModel):
    """An import's progress and outcome."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    status: HoldingImportStatus
    format: HoldingImportFormat
    lines: int = Field(description="Lines read (a CSV's header and empty lines included).")
    accepted: int = Field(description="Holdings lines that are merged, or will be.")
    rejected: int
    customers: int = Field(description="Customers whose holdings the import replaces.")
    customers_done: int = Field(description="Of those, the customers merged and re-tiered so far.")
    chunks_done: int
    created_at: datetime
    finished_at: datetime | None
    rejections: list[ImportRejection] = Field(
        description="The first 1,000 rejected lines, by line: the field and why (`rejected` counts them all). "
        "A customer with a rejected line keeps their holdings: their other lines are rejected with it."
    )
