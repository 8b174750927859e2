"""Benefit uses: counted once (Idempotency-Key), never beyond the period's limit, attributed to the tier that gave
the benefit, announced as a benefit.used webhook event in the same transaction; listed per customer; counted per
benefit and tier in the take-up report; erased with the customer."""

from contextlib import nullcontext
from datetime import UTC, datetime

from sqlalchemy import delete, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.benefits.customer import entitlements, period_bounds, resolve_conflicts, usage_of
from app.benefits.errors import BenefitNotFound, BenefitUseNotFound, NotEntitled, UsageLimitReached
from app.benefits.models import Benefit, BenefitUsage, BenefitUse
from app.benefits.queries import active_benefits, customer_id_of, held_tiers
from app.benefits.schemas import BenefitUseRead, TakeUpReport, TakeUpRow
from app.core.errors import InvalidInput
from app.core.pagination import PageRequest, keyset
from app.webhooks import outbox

# Raise the period's count only while it is below the limit. Concurrent uses queue on the row's lock (ON CONFLICT
# DO UPDATE re-checks the WHERE on the latest row), so the count never passes the limit; no row back: used up.
_COUNT_USE = text("""
INSERT INTO benefit_usage AS u (customer_id, benefit_id, period_start, used)
VALUES (:customer_id, :benefit_id, :period_start, 1)
ON CONFLICT (customer_id, benefit_id, period_start) DO UPDATE SET used = u.used + 1
WHERE u.used < :usage_limit
RETURNING used
""")


async def record_use(
    session: AsyncSession, external_id: str, code: str, channel: str | None, now: datetime | None = None
) -> BenefitUseRead:
    """One use of a benefit in force for the customer; 409 when not entitled or used up for the period."""
    now = now or datetime.now(UTC)
    today = now.astimezone(UTC).date()
    customer_id, held = await held_tiers(session, external_id)
    if await session.scalar(select(Benefit.id).where(Benefit.code == code)) is None:
        raise BenefitNotFound(code)
    benefits = await active_benefits(session, now, code)
    winners, _ = resolve_conflicts(await entitlements(lambda: nullcontext(session), customer_id, held, benefits))
    if not winners:
        raise NotEntitled(code)
    winner = winners[0]
    benefit = winner.benefit
    if channel is not None and channel not in benefit.channels:
        raise InvalidInput("/channel", f"benefit '{code}' is taken on {', '.join(benefit.channels)}, not {channel}")
    policy, tier, _, _ = max(winner.reasons, key=lambda reason: reason[2])
    usage = None
    period_start = None
    if benefit.usage_limit is not None:
        period_start, period_end = period_bounds(benefit.usage_period, today)
        used = await session.scalar(
            _COUNT_USE,
            {
                "customer_id": customer_id,
                "benefit_id": benefit.id,
                "period_start": period_start,
                "usage_limit": benefit.usage_limit,
            },
        )
        if used is None:
            raise UsageLimitReached(code, benefit.usage_limit, benefit.usage_period, period_end.isoformat())
        usage = usage_of(benefit, used, today)
    use = BenefitUse(
        customer_id=customer_id,
        benefit_id=benefit.id,
        policy_key=policy,
        tier=tier,
        channel=channel,
        period_start=period_start,
        used_at=now,
    )
    session.add(use)
    await session.flush()
    await outbox.emit(
        session,
        "benefit.used",
        {"customer_id": external_id, "benefit_code": code, "policy_key": policy, "tier": tier, "used_at": now},
        customer_id=customer_id,
    )
    return BenefitUseRead(
        id=use.id,
        customer_id=external_id,
        benefit_code=code,
        policy_key=policy,
        tier=tier,
        channel=channel,
        used_at=now,
        usage=usage,
    )


def _read(external_id: str, use: BenefitUse, code: str) -> BenefitUseRead:
    return BenefitUseRead(
        id=use.id,
        customer_id=external_id,
        benefit_code=code,
        policy_key=use.policy_key,
        tier=use.tier,
        channel=use.channel,
        used_at=use.used_at,
    )


async def list_uses(
    session: AsyncSession, external_id: str, page: PageRequest, code: str | None = None
) -> list[BenefitUseRead]:
    """The customer's uses, newest first (rows fetched with keyset: limit + 1)."""
    customer_id = await customer_id_of(session, external_id)
    query = (
        select(BenefitUse, Benefit.code)
        .join(Benefit, Benefit.id == BenefitUse.benefit_id)
        .where(BenefitUse.customer_id == customer_id)
    )
    if code is not None:
        query = query.where(Benefit.code == code)
    rows = await session.execute(keyset(query, BenefitUse.id, page, descending=True))
    return [_read(external_id, use, benefit_code) for use, benefit_code in rows]


async def get_use(session: AsyncSession, external_id: str, use_id: int) -> BenefitUseRead:
    customer_id = await customer_id_of(session, external_id)
    row = (
        await session.execute(
            select(BenefitUse, Benefit.code)
            .join(Benefit, Benefit.id == BenefitUse.benefit_id)
            .where(BenefitUse.customer_id == customer_id, BenefitUse.id == use_id)
        )
    ).first()
    if row is None:
        raise BenefitUseNotFound(use_id)
    return _read(external_id, *row)


async def erase_uses(session: AsyncSession, customer_id: int) -> None:
    """The customer's uses and counters go with the customer (erasure)."""
    await session.execute(delete(BenefitUse).where(BenefitUse.customer_id == customer_id))
    await session.execute(delete(BenefitUsage).where(BenefitUsage.customer_id == customer_id))


_TAKE_UP = text("""
WITH attached AS (
    SELECT b.id AS benefit_id, b.code, a->>'policy_key' AS policy, a->>'tier' AS tier
    FROM benefit b CROSS JOIN LATERAL jsonb_array_elements(b.attachments) a
    WHERE (CAST(:code AS text) IS NULL OR b.code = :code)
      AND (CAST(:policy AS text) IS NULL OR a->>'policy_key' = :policy)
),
holders AS (
    SELECT p.key AS policy, effective_tier(ta) AS tier, count(*) AS customers
    FROM tier_assignment ta JOIN tier_policy p ON p.id = ta.policy_id
    JOIN customer c ON c.id = ta.customer_id AND c.erased_at IS NULL
    WHERE p.key IN (SELECT DISTINCT policy FROM attached)
    GROUP BY 1, 2
),
used AS (
    SELECT u.benefit_id, u.policy_key AS policy, u.tier, count(*) AS uses, count(DISTINCT u.customer_id) AS customers
    FROM benefit_use u
    WHERE u.used_at >= :from_ AND u.used_at < :to_
    GROUP BY 1, 2, 3
)
SELECT a.code, a.policy, a.tier, coalesce(h.customers, 0) AS customers_in_tier,
       coalesce(u.customers, 0) AS customers_using, coalesce(u.uses, 0) AS uses
FROM attached a
LEFT JOIN holders h ON h.policy = a.policy AND h.tier = a.tier
LEFT JOIN used u ON u.benefit_id = a.benefit_id AND u.policy = a.policy AND u.tier = a.tier
ORDER BY a.code, a.policy, a.tier
""")


async def take_up(
    session: AsyncSession, start: datetime, end: datetime, *, code: str | None = None, policy: str | None = None
) -> TakeUpReport:
    """Per benefit and attached tier: holders of the tier now, distinct customers who used it through the tier in
    [start, end), uses, and the take-up rate."""
    if end <= start:
        raise InvalidInput("to", "must be after from", location="query")
    rows = await session.execute(_TAKE_UP, {"code": code, "policy": policy, "from_": start, "to_": end})
    return TakeUpReport(
        from_=start,
        to=end,
        rows=[
            TakeUpRow(
                benefit_code=row.code,
                policy_key=row.policy,
                tier=row.tier,
                customers_in_tier=row.customers_in_tier,
                customers_using=row.customers_using,
                uses=row.uses,
                take_up_rate=round(row.customers_using / row.customers_in_tier, 4) if row.customers_in_tier else 0.0,
            )
            for row in rows
        ],
    )
