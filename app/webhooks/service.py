"""Webhook subscriptions and their deliveries: create, edit, rotate the secret, read the delivery log, redeliver,
and purge what retention no longer keeps. The session is flushed, never committed."""

from datetime import timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.crypto import open_sealed, seal
from app.core.errors import InvalidInput
from app.core.pagination import PageRequest, keyset
from app.webhooks.errors import DeliveryNotFound, WebhookNotFound
from app.webhooks.models import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription
from app.webhooks.schemas import WebhookCreate, WebhookUpdate
from app.webhooks.signing import new_secret

SECRET_PURPOSE = "webhook-secret"


def host_allowed(url: str, allowed_hosts: str) -> bool:
    """Whether a URL's host is on TIERWISE_WEBHOOK_ALLOWED_HOSTS (empty: every host is)."""
    entries = [entry.strip().lower() for entry in allowed_hosts.split(",") if entry.strip()]
    if not entries:
        return True
    host = (urlsplit(url).hostname or "").lower()
    return any(host == entry or (entry.startswith(".") and host.endswith(entry)) for entry in entries)


def _check_host(url: str, settings: Settings) -> None:
    if not host_allowed(url, settings.webhook_allowed_hosts):
        raise InvalidInput("/url", "the host is not on this service's allow-list (TIERWISE_WEBHOOK_ALLOWED_HOSTS)")


def seal_secret(settings: Settings, secret: str) -> bytes:
    return seal(settings.encryption_key, SECRET_PURPOSE, secret.encode())


def open_secret(settings: Settings, sealed: bytes) -> str:
    return open_sealed(settings.encryption_key, SECRET_PURPOSE, sealed).decode()


async def create_subscription(
    session: AsyncSession, body: WebhookCreate, settings: Settings
) -> tuple[WebhookSubscription, str]:
    """A new subscription and its secret (returned this once; stored sealed)."""
    _check_host(body.url, settings)
    secret = new_secret()
    row = WebhookSubscription(
        url=body.url,
        event_types=body.event_types,
        description=body.description,
        status=body.status,
        secret_sealed=seal_secret(settings, secret),
    )
    session.add(row)
    await session.flush()
    await session.refresh(row)
    return row, secret


async def get_subscription(session: AsyncSession, subscription_id: int, *, lock: bool = False) -> WebhookSubscription:
    query = select(WebhookSubscription).where(WebhookSubscription.id == subscription_id)
    if lock:
        query = query.with_for_update().execution_options(populate_existing=True)
    row = await session.scalar(query)
    if row is None:
        raise WebhookNotFound(subscription_id)
    return row


async def list_subscriptions(session: AsyncSession, page: PageRequest) -> list[WebhookSubscription]:
    return list(await session.scalars(keyset(select(WebhookSubscription), WebhookSubscription.id, page)))


async def update_subscription(
    session: AsyncSession, row: WebhookSubscription, body: WebhookUpdate, settings: Settings
) -> WebhookSubscription:
    """Apply the fields sent (to a row read with lock=True)."""
    changes = body.model_dump(exclude_unset=True)
    if "url" in changes:
        _check_host(changes["url"], settings)
    if all(getattr(row, name) == value for name, value in changes.items()):
        return row  # nothing changes: neither updated_at nor the ETag
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at = func.now()
    await session.flush()
    await session.refresh(row)
    return row


async def delete_subscription(session: AsyncSession, row: WebhookSubscription) -> None:
    """Delete a subscription with its deliveries (by cascade) and their log (events stay for other subscribers)."""
    await session.execute(
        text(
            "DELETE FROM webhook_attempt WHERE delivery_id IN "
            "(SELECT id FROM webhook_delivery WHERE subscription_id = :subscription)"
        ),
        {"subscription": row.id},
    )
    await session.delete(row)
    await session.flush()


async def rotate_secret(
    session: AsyncSession, row: WebhookSubscription, overlap_hours: float | None, settings: Settings
) -> tuple[WebhookSubscription, str]:
    """A new secret; the current one keeps signing (as a second v1) for the overlap, then is dropped."""
    overlap = settings.webhook_secret_overlap_hours if overlap_hours is None else overlap_hours
    secret = new_secret()
    row.previous_secret_sealed = row.secret_sealed if overlap > 0 else None
    row.previous_secret_expires_at = (func.now() + timedelta(hours=overlap)) if overlap > 0 else None
    row.secret_sealed = seal_secret(settings, secret)
    row.updated_at = func.now()
    await session.flush()
    await session.refresh(row)
    return row, secret


# ---- deliveries ----------------------------------------------------------------------------------------------

_DELIVERY_COLUMNS = (
    WebhookDelivery.id,
    WebhookEvent.event_id,
    WebhookEvent.event_type,
    WebhookDelivery.state,
    WebhookDelivery.attempts,
    WebhookDelivery.next_attempt_at,
    WebhookDelivery.last_status_code,
    WebhookDelivery.last_error,
    WebhookDelivery.created_at,
    WebhookDelivery.finished_at,
)


async def list_deliveries(session: AsyncSession, subscription_id: int, state: str | None, page: PageRequest):
    """A subscription's deliveries, newest first."""
    await get_subscription(session, subscription_id)
    query = (
        select(*_DELIVERY_COLUMNS)
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(WebhookDelivery.subscription_id == subscription_id)
    )
    if state is not None:
        query = query.where(WebhookDelivery.state == state)
    return list((await session.execute(keyset(query, WebhookDelivery.id, page, descending=True))).all())


async def get_delivery(session: AsyncSession, subscription_id: int, delivery_id: int):
    """(delivery row, its attempts oldest first)."""
    row = (
        await session.execute(
            select(*_DELIVERY_COLUMNS)
            .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == subscription_id)
        )
    ).one_or_none()
    if row is None:
        raise DeliveryNotFound(subscription_id, delivery_id)
    attempts = list(
        await session.scalars(
            select(WebhookAttempt).where(WebhookAttempt.delivery_id == delivery_id).order_by(WebhookAttempt.id)
        )
    )
    return row, attempts


def _requeue():
    return update(WebhookDelivery).values(state="pending", attempts=0, next_attempt_at=func.now(), finished_at=None)
    # leased_until stays: a delivery being sent right now is not sent a second time at once


async def redeliver(session: AsyncSession, subscription_id: int, delivery_id: int) -> None:
    """Send one delivery again (dead, delivered or still pending: due now, with a fresh set of attempts)."""
    updated = await session.execute(
        _requeue().where(WebhookDelivery.id == delivery_id, WebhookDelivery.subscription_id == subscription_id)
    )
    if updated.rowcount == 0:
        raise DeliveryNotFound(subscription_id, delivery_id)


async def redeliver_dead(session: AsyncSession, subscription_id: int) -> int:
    """Make every dead delivery of a subscription pending again, due now; how many."""
    await get_subscription(session, subscription_id)
    updated = await session.execute(
        _requeue().where(WebhookDelivery.subscription_id == subscription_id, WebhookDelivery.state == "dead")
    )
    return updated.rowcount


# With their log: webhook_attempt has no foreign key to the (partitioned) deliveries, so no cascade either.
_PURGE_DELIVERED = text("""
WITH gone AS (
    DELETE FROM webhook_delivery WHERE id = ANY(ARRAY(
        SELECT id FROM webhook_delivery
        WHERE state = 'delivered' AND finished_at < now() - make_interval(secs => :keep) LIMIT 10000))
    RETURNING id
), logged AS (
    DELETE FROM webhook_attempt WHERE delivery_id IN (SELECT id FROM gone)
)
SELECT count(*) FROM gone
""")
# Events no delivery refers to any more (all delivered and purged, or none was made), fanned out long enough ago.
_PURGE_EVENTS = text("""
WITH gone AS (
    DELETE FROM webhook_event e WHERE e.id = ANY(ARRAY(
        SELECT id FROM webhook_event WHERE fanned_out_at < now() - make_interval(secs => :keep) LIMIT 10000))
      AND NOT EXISTS (SELECT 1 FROM webhook_delivery d WHERE d.event_id = e.id)
    RETURNING 1
)
SELECT count(*) FROM gone
""")


async def purge_delivered(session: AsyncSession, settings: Settings) -> dict:
    """Delete deliveries delivered more than TIERWISE_WEBHOOK_RETENTION_DAYS ago (with their log), then the events
    nothing refers to any more; ten thousand a statement. Dead and pending deliveries stay."""
    keep = settings.webhook_retention_days * 86400
    counts = {"webhook_deliveries_purged": 0, "webhook_events_purged": 0}
    for statement, name in ((_PURGE_DELIVERED, "webhook_deliveries_purged"), (_PURGE_EVENTS, "webhook_events_purged")):
        while (deleted := await session.scalar(statement, {"keep": keep})) > 0:
            counts[name] += deleted
            if deleted < 10000:
                break
    return counts
