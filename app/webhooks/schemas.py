"""Webhook request and response bodies: subscriptions, their secret (shown once), deliveries and the event types."""

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit
from uuid import UUID

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator
from typing_extensions import TypeAliasType

from app.core.strict import NO_NUL_PATTERN, WHITESPACE
from app.webhooks.events import EVENT_TYPES

SubscriptionStatus = TypeAliasType(
    "SubscriptionStatus",
    Annotated[
        Literal["active", "paused"],
        Field(description="active: events are delivered; paused: they are kept and sent on resume."),
    ],
)
DeliveryState = TypeAliasType(
    "DeliveryState",
    Annotated[
        Literal["pending", "delivered", "dead"],
        Field(
            description="pending: to be sent or retried; delivered: the receiver answered 2xx; dead: out of attempts "
            "(redeliver by hand)."
        ),
    ],
)


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise ValueError("must be an http or https URL")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("must not carry credentials (user:password@); the signature authenticates the sender")
    try:
        parts.port  # noqa: B018 (a port out of range raises here)
    except ValueError:
        raise ValueError("has an invalid port") from None
    if not parts.hostname:
        raise ValueError("must name a host")
    if parts.fragment:
        raise ValueError("must not have a fragment")
    return url


def _distinct(types: list[str]) -> list[str]:
    return sorted(set(types))


# The catalogue's names, published as an enum so the schema allows exactly what is accepted.
WebhookEventType = TypeAliasType(
    "WebhookEventType",
    Annotated[Literal[tuple(EVENT_TYPES)], Field(description="An event type (GET /v1/webhooks/event-types).")],
)


WebhookUrl = Annotated[
    str,
    Field(
        min_length=8,
        max_length=2048,
        pattern=r"^https?://[A-Za-z0-9.\-]+(:(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4}))?"
        rf"([/?][^#{WHITESPACE}\x00]*)?$",  # a port within 0..65535; no NUL (Postgres text cannot hold it)
        description="Where events are POSTed: http or https, no credentials in it.",
    ),
    AfterValidator(_check_url),
]
EventTypes = Annotated[
    list[WebhookEventType],
    Field(min_length=1, max_length=50, description="The event types to receive (GET /v1/webhooks/event-types)."),
    AfterValidator(_distinct),
]


class WebhookCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "url": "https://mobile-backend.bank.example/hooks/tierwise",
                    "event_types": ["tier.upgraded", "tier.downgraded"],
                    "description": "push 'you've been upgraded'",
                }
            ]
        },
    )

    url: WebhookUrl
    event_types: EventTypes
    description: str | None = Field(None, max_length=200, pattern=NO_NUL_PATTERN)
    status: SubscriptionStatus = Field("active", description="paused: events are kept and sent on resume.")


class WebhookUpdate(BaseModel):
    """Fields to change; the others stay."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"status": "paused"}]})

    # url, event_types and status may be left out but not set to null (their types have no null); description may
    url: WebhookUrl = None
    event_types: EventTypes = None
    description: str | None = Field(None, max_length=200, pattern=NO_NUL_PATTERN)
    status: SubscriptionStatus = Field(None, description="paused: events are kept and sent on resume.")

    @field_validator("url", "event_types", "status", mode="before")
    @classmethod
    def not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class WebhookRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    url: str
    event_types: list[str]
    description: str | None
    status: SubscriptionStatus
    created_at: datetime
    updated_at: datetime
    previous_secret_expires_at: datetime | None = Field(
        description="After a rotation: until when the previous secret also signs deliveries."
    )


class WebhookCreated(WebhookRead):
    secret: str = Field(
        description="The signing secret. Shown in this response only; store it in a secret manager "
        "(see the signature scheme in the tag's description)."
    )


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"overlap_hours": 24}]})

    overlap_hours: float | None = Field(
        None,
        strict=True,  # a number (an integer too), not true/false
        ge=0,
        le=24 * 7,
        description="How long the previous secret also "
        "signs deliveries (default TIERWISE_WEBHOOK_SECRET_OVERLAP_HOURS, 24); 0 "
        "retires it at once.",
    )


class AttemptRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    at: datetime
    duration_ms: int
    status_code: int | None = Field(description="The receiver's HTTP status; null when there was no answer.")
    error: str | None = Field(
        description="Why there was no 2xx: the error class (ConnectError, ReadTimeout...) or HTTP <status>."
    )


class DeliveryRead(BaseModel):
    id: int
    event_id: UUID = Field(description="The Tierwise-Event-Id header: what the receiver de-duplicates on.")
    event_type: str
    state: DeliveryState
    attempts: int = Field(description="Attempts since the delivery was made (or redelivered).")
    next_attempt_at: datetime | None = Field(description="When a pending delivery is tried next.")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    finished_at: datetime | None = Field(description="When it was delivered or declared dead.")


class DeliveryDetail(DeliveryRead):
    attempts_log: list[AttemptRead] = Field(description="Every attempt, oldest first.")


class RedeliveredCount(BaseModel):
    requeued: int = Field(description="Dead deliveries made pending again, due now.")


class EventTypeRead(BaseModel):
    name: str
    description: str
    payload_schema: dict[str, Any] = Field(description="The JSON schema of the event's `data`.")
