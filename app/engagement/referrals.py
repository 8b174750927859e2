"""Referral operations: a referral once per (referrer, event_id), its moves referred -> onboarded -> active (a code
resolved to the customer it brought in), each a webhook event. Flush, never commit."""

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.core.db import customer_of
from app.core.errors import InvalidInput, NotFound
from app.customers.models import Customer
from app.engagement.errors import InvalidMove
from app.engagement.models import Referral
from app.engagement.schemas.referrals import ReferralIn, ReferralMoveIn
from app.webhooks import outbox

NEXT = {"referred": "onboarded", "onboarded": "active"}
_REFEREE = aliased(Customer)


async def _customer(session: AsyncSession, external_id: str, pointer: str) -> int:
    customer_id = await session.scalar(
        select(Customer.id).where(Customer.external_id == external_id, Customer.erased_at.is_(None))
    )
    if customer_id is None:
        raise InvalidInput(pointer, f"unknown customer '{external_id}'")
    return customer_id


def _read_query():
    return (
        select(Referral, Customer.external_id, _REFEREE.external_id)
        .join(Customer, Customer.id == Referral.referrer_id)
        .outerjoin(_REFEREE, _REFEREE.id == Referral.referee_id)
    )


def as_read(row) -> dict:
    referral, referrer, referee = row
    return {
        **{c: getattr(referral, c) for c in ("id", "event_id", "referral_code", "status", "referred_at")},
        **{c: getattr(referral, c) for c in ("onboarded_at", "activated_at")},
        "referrer_customer_id": referrer,
        "referee_customer_id": referee,
    }


async def get_referral(session: AsyncSession, referral_id: int):
    row = (await session.execute(_read_query().where(Referral.id == referral_id))).first()
    if row is None:
        raise NotFound(f"no referral {referral_id}")
    return row


async def record_referral(session: AsyncSession, body: ReferralIn) -> tuple[int, bool]:
    """Store a referral; (its id, True when new). The referee must not be the referrer."""
    referrer = await _customer(session, body.referrer_customer_id, "/referrer_customer_id")
    referee = None
    if body.referee_customer_id is not None:
        referee = await _customer(session, body.referee_customer_id, "/referee_customer_id")
        if referee == referrer:
            raise InvalidInput("/referee_customer_id", "a customer cannot refer themselves")
    new_id = await session.scalar(
        insert(Referral)
        .values(
            referrer_id=referrer,
            event_id=body.event_id,
            referee_id=referee,
            referral_code=body.referral_code,
            referred_at=body.referred_at,
        )
        .on_conflict_do_nothing(index_elements=["referrer_id", "event_id"])
        .returning(Referral.id)
    )
    if new_id is not None:
        await _emit(session, new_id, body.referrer_customer_id, None, "referred", body.referred_at, referrer)
        return new_id, True
    existing = await session.scalar(
        select(Referral.id).where(Referral.referrer_id == referrer, Referral.event_id == body.event_id)
    )
    return existing, False


async def move_referral(session: AsyncSession, referral_id: int, body: ReferralMoveIn) -> int:
    """referred -> onboarded -> active; the referrer's customer id (whose advocacy it moves)."""
    referrer_id = await customer_of(session, Referral, referral_id, Referral.referrer_id)
    referral = await session.scalar(
        select(Referral).where(Referral.referrer_id == referrer_id, Referral.id == referral_id).with_for_update()
    )
    if referral is None:
        raise NotFound(f"no referral {referral_id}")
    if NEXT.get(referral.status) != body.to_status:
        raise InvalidMove(referral.status, body.to_status)
    if body.referee_customer_id is not None:
        referee = await _customer(session, body.referee_customer_id, "/referee_customer_id")
        if referral.referee_id not in (None, referee) or referee == referral.referrer_id:
            raise InvalidInput("/referee_customer_id", "not this referral's referee")
        referral.referee_id = referee
    if body.to_status == "onboarded" and referral.referee_id is None:
        raise InvalidInput("/referee_customer_id", "name the customer the referral code brought in")
    at = body.at or datetime.now(UTC)
    from_status, referral.status, referral.updated_at = referral.status, body.to_status, datetime.now(UTC)
    if body.to_status == "onboarded":
        referral.onboarded_at = at
    else:
        referral.activated_at = at
    await session.flush()
    referrer = await session.scalar(select(Customer.external_id).where(Customer.id == referral.referrer_id))
    await _emit(session, referral.id, referrer, from_status, body.to_status, at, referral.referrer_id)
    return referral.referrer_id


async def _emit(session, referral_id, referrer, from_status, to_status, at, customer_id) -> None:
    await outbox.emit(
        session,
        "referral.status_changed",
        {
            "referral_id": referral_id,
            "referrer_customer_id": referrer,
            "from_status": from_status,
            "to_status": to_status,
            "at": at,
        },
        customer_id=customer_id,
    )


async def list_referrals(session: AsyncSession, referrer: str | None, after: int | None, limit: int) -> list:
    query = _read_query()
    if referrer is not None:
        query = query.where(Customer.external_id == referrer)
    if after is not None:
        query = query.where(Referral.id > after)
    return list((await session.execute(query.order_by(Referral.id).limit(limit + 1))).all())
