"""Product quotas (额度): caps on a product's conversions per period (a count and/or an amount), decremented by
conversions, never by served lists.

A conversion is a customer taking a quota'd product: a feedback convert event, or a product newly held by the
customer (PUT .../holdings, a holdings import; a convert event also opens a holding). It counts once per
(product, customer, period), whichever signal reports it first: the ledger product_quota_conversion is keyed so,
and a retried event, a replayed Idempotency-Key or an import run again finds its key there and counts nothing.
Every writer locks the product's quota row first (SELECT ... FOR UPDATE, in product-code order), so concurrent
conversions take the quota in turn and never beyond its cap. A conversion past a cap is still recorded (the
event, the holding, and its ledger row with counted = false); the quota just reads sold out.

Periods are calendar periods in UTC (month, quarter, year), or lifetime. The counters belong to the period in
`period_start`; the first conversion (or cap change) of a later period starts them again. A quota that reaches a
cap is sold out until its period ends (`sold_out_until`; 'infinity' for a lifetime cap) or its cap is raised, and
the catalogue's product.sold_out webhook event says so once per sell-out. Recommendations read `sold_out_until`
of this small table with each request (app/recommendations/queries.py): no offer state is recomputed.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Row, delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.products.errors import ProductNotFound, QuotaNotFound
from app.products.models import Product, ProductQuota, ProductQuotaConversion
from app.webhooks import outbox

LIFETIME_START = datetime(1970, 1, 1, tzinfo=UTC)
"""The one period of a lifetime cap starts here (the ledger's key needs a value)."""

NEVER = datetime.max.replace(tzinfo=UTC)
"""The end of a lifetime: a lifetime cap reached stays sold out until it is raised."""

_QUOTA = ProductQuota.__table__
_LEDGER = ProductQuotaConversion.__table__


def period_bounds(period: str, now: datetime) -> tuple[datetime, datetime | None]:
    """[start, end) of the period containing `now` (UTC calendar); a lifetime has no end."""
    now = now.astimezone(UTC)
    if period == "lifetime":
        return LIFETIME_START, None
    if period == "year":
        return datetime(now.year, 1, 1, tzinfo=UTC), datetime(now.year + 1, 1, 1, tzinfo=UTC)
    first_month = now.month if period == "month" else (now.month - 1) // 3 * 3 + 1
    months = 1 if period == "month" else 3
    start = datetime(now.year, first_month, 1, tzinfo=UTC)
    year, month = divmod(first_month - 1 + months, 12)
    return start, datetime(now.year + year, month + 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Conversion:
    product_code: str
    customer_id: int
    source: str  # convert | holding
    amount: Decimal | None = None


@dataclass
class Usage:
    """A quota's counters as of `now`: the current period's (zero when the stored ones belong to an earlier one)."""

    product_code: str
    period: str
    cap_count: int | None
    cap_amount: Decimal | None
    period_start: datetime
    period_end: datetime | None
    sold_count: int
    sold_amount: Decimal
    over_cap_count: int
    sold_out: bool
    sold_out_at: datetime | None
    id: int = 0

    @classmethod
    def of(cls, row: Row | Any, now: datetime) -> "Usage":
        start, end = period_bounds(row.period, now)
        current = row.period_start == start
        sold_out_until = _until(row)
        return cls(
            product_code=row.product_code,
            period=row.period,
            cap_count=row.cap_count,
            cap_amount=row.cap_amount,
            period_start=start,
            period_end=end,
            sold_count=row.sold_count if current else 0,
            sold_amount=row.sold_amount if current else Decimal("0"),
            over_cap_count=row.over_cap_count if current else 0,
            sold_out=sold_out_until is not None and sold_out_until > now,
            sold_out_at=row.sold_out_at if sold_out_until is not None and sold_out_until > now else None,
            id=row.id,
        )

    def reached(self) -> bool:
        return (self.cap_count is not None and self.sold_count >= self.cap_count) or (
            self.cap_amount is not None and self.sold_amount >= self.cap_amount
        )

    def fits(self, amount: Decimal) -> bool:
        return not self.sold_out and (
            (self.cap_count is None or self.sold_count + 1 <= self.cap_count)
            and (self.cap_amount is None or self.sold_amount + amount <= self.cap_amount)
        )


def _until(row) -> datetime | None:
    """The row's sold_out_until; Postgres' 'infinity' (read by the driver as a naive datetime.max) is NEVER."""
    value = row.sold_out_until
    return NEVER if value is not None and value.tzinfo is None else value


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


# ---- conversions ----------------------------------------------------------------------------------------------

# Which of these customers' conversions the period has recorded already; and the new ones recorded (one array per
# column: a chunk of an import binds four parameters, not four per conversion).
_KNOWN = text("""
SELECT customer_id FROM product_quota_conversion
WHERE product_code = :product_code AND period_start = :period_start AND customer_id = ANY(CAST(:ids AS bigint[]))
""")
_RECORD = text("""
INSERT INTO product_quota_conversion (product_code, period_start, customer_id, source, amount, counted)
SELECT :product_code, :period_start, * FROM unnest(
    CAST(:customer_id AS bigint[]), CAST(:source AS text[]), CAST(:amount AS numeric[]), CAST(:counted AS boolean[]))
ON CONFLICT DO NOTHING
""")


async def record_conversions(
    session: AsyncSession, conversions: list[Conversion], *, now: datetime | None = None
) -> int:
    """Count these conversions against their products' quotas, in the caller's transaction (after the write that
    made them); products without a quota are skipped. Returns how many were counted."""
    codes = sorted({c.product_code for c in conversions})
    if not codes:
        return 0
    now = _now(now)
    quotas = (
        await session.execute(
            select(_QUOTA).where(_QUOTA.c.product_code.in_(codes)).order_by(_QUOTA.c.product_code).with_for_update()
        )
    ).all()
    counted = 0
    for row in quotas:
        usage = Usage.of(row, now)
        mine = {}
        for conversion in conversions:  # a customer's first signal in the batch is the one kept
            if conversion.product_code == row.product_code:
                mine.setdefault(conversion.customer_id, conversion)
        key = {"product_code": row.product_code, "period_start": usage.period_start}
        known = set((await session.scalars(_KNOWN, {**key, "ids": list(mine)})).all())
        ledger = []
        for customer_id, conversion in mine.items():
            if customer_id in known:
                continue
            amount = conversion.amount or Decimal("0")
            fits = usage.fits(amount)
            if fits:
                usage.sold_count += 1
                usage.sold_amount += amount
            else:
                usage.over_cap_count += 1
            ledger.append(
                {
                    "customer_id": customer_id,
                    "source": conversion.source,
                    "amount": conversion.amount,
                    "counted": fits,
                }
            )
        if not ledger and row.period_start == usage.period_start:
            continue
        if ledger:
            columns = {name: [line[name] for line in ledger] for name in ("customer_id", "source", "amount", "counted")}
            await session.execute(_RECORD, {**key, **columns})
        counted += sum(1 for line in ledger if line["counted"])
        await _store(session, row, usage, now)
    return counted


async def _store(session: AsyncSession, row: Row, usage: Usage, now: datetime) -> None:
    """Write `usage` to the quota row (locked), sold out when it reached a cap; a new sell-out emits
    product.sold_out."""
    sold_out_now = usage.reached()
    until = _until(row)
    was_sold_out = until is not None and until > now
    values: dict[str, Any] = {
        "period_start": usage.period_start,
        "sold_count": usage.sold_count,
        "sold_amount": usage.sold_amount,
        "over_cap_count": usage.over_cap_count,
        "sold_out_until": (usage.period_end or NEVER) if sold_out_now else None,
        "sold_out_at": (row.sold_out_at if was_sold_out else now) if sold_out_now else None,
        "updated_at": func.now(),
    }
    await session.execute(update(_QUOTA).where(_QUOTA.c.id == row.id).values(**values))
    if sold_out_now and not was_sold_out:
        await outbox.emit(
            session,
            "product.sold_out",
            {
                "product_code": usage.product_code,
                "period": usage.period,
                "period_start": usage.period_start,
                "period_end": usage.period_end,
                "cap_count": usage.cap_count,
                "cap_amount": usage.cap_amount,
                "sold_count": usage.sold_count,
                "sold_amount": usage.sold_amount,
                "at": now,
            },
        )


async def erase_customer(session: AsyncSession, customer_id: int) -> None:
    """Erasure: the amounts the customer's conversions counted go (the quota's sums and the count stay)."""
    await session.execute(update(_LEDGER).where(_LEDGER.c.customer_id == customer_id).values(amount=None))


# ---- the demo bank's quotas ------------------------------------------------------------------------------------

DEFAULT_QUOTAS_FILE = Path(__file__).parent.parent / "defaults" / "quotas.json"


async def load_default_quotas(session: AsyncSession, *, now: datetime | None = None) -> int:
    """The shipped quotas (app/defaults/quotas.json: 1,000 platinum cards a month, a RMB 500 million structured
    note tranche), added where a product has none (an admin's quota and its usage stay). Returns how many were
    added."""
    now = _now(now)
    rows = [
        {
            "product_code": item["product_code"],
            "period": item["period"],
            "cap_count": item["cap_count"],
            "cap_amount": None if item["cap_amount"] is None else Decimal(item["cap_amount"]),
            "period_start": period_bounds(item["period"], now)[0],
        }
        for item in json.loads(DEFAULT_QUOTAS_FILE.read_text())
    ]
    result = await session.execute(
        pg_insert(_QUOTA).values(rows).on_conflict_do_nothing(index_elements=["product_code"]).returning(_QUOTA.c.id)
    )
    return len(result.all())


# ---- administration -------------------------------------------------------------------------------------------


async def get_quota(session: AsyncSession, code: str, *, lock: bool = False, now: datetime | None = None) -> Usage:
    statement = select(_QUOTA).where(_QUOTA.c.product_code == code)
    row = (await session.execute(statement.with_for_update() if lock else statement)).one_or_none()
    if row is None:
        if await session.scalar(select(Product.id).where(Product.code == code)) is None:
            raise ProductNotFound(code)
        raise QuotaNotFound(code)
    return Usage.of(row, _now(now))


async def put_quota(
    session: AsyncSession,
    code: str,
    *,
    period: str,
    cap_count: int | None,
    cap_amount: Decimal | None,
    now: datetime | None = None,
) -> tuple[Usage, bool]:
    """Create or replace a product's caps; (usage, created). A changed period counts again, from the ledger, the
    conversions of the new period; a cap reached (lowered) sells the product out, a cap raised brings it back."""
    now = _now(now)
    if await session.scalar(select(Product.id).where(Product.code == code)) is None:
        raise ProductNotFound(code)
    start, _ = period_bounds(period, now)
    created = (
        await session.execute(
            pg_insert(_QUOTA)
            .values(product_code=code, period=period, cap_count=cap_count, cap_amount=cap_amount, period_start=start)
            .on_conflict_do_nothing(index_elements=["product_code"])
            .returning(_QUOTA.c.id)
        )
    ).first() is not None
    row = (await session.execute(select(_QUOTA).where(_QUOTA.c.product_code == code).with_for_update())).one()
    usage = Usage.of(row, now)
    usage.cap_count, usage.cap_amount = cap_count, cap_amount
    if period != row.period:
        usage.period, usage.period_start, usage.period_end = period, *period_bounds(period, now)
        totals = (
            await session.execute(
                select(
                    func.count().filter(_LEDGER.c.counted),
                    func.coalesce(func.sum(_LEDGER.c.amount).filter(_LEDGER.c.counted), 0),
                    func.count().filter(~_LEDGER.c.counted),
                ).where(_LEDGER.c.product_code == code, _LEDGER.c.period_start == start)
            )
        ).one()
        usage.sold_count, usage.sold_amount, usage.over_cap_count = totals
    usage.sold_out = False  # decided again from the new caps
    await session.execute(
        update(_QUOTA).where(_QUOTA.c.id == row.id).values(period=period, cap_count=cap_count, cap_amount=cap_amount)
    )
    await _store(session, row, usage, now)
    return await get_quota(session, code, now=now), created


async def delete_quota(session: AsyncSession, code: str) -> None:
    """Remove a product's quota and its ledger: the product is no longer capped."""
    await session.execute(delete(_QUOTA).where(_QUOTA.c.product_code == code))


async def list_usage(
    session: AsyncSession, *, after_id: int | None, limit: int, now: datetime | None = None
) -> list[Usage]:
    """Every quota's usage in the current period, by id (limit + 1 rows, for the page's cursor)."""
    now = _now(now)
    statement = select(_QUOTA).order_by(_QUOTA.c.id).limit(limit + 1)
    if after_id is not None:
        statement = statement.where(_QUOTA.c.id > after_id)
    return [Usage.of(row, now) for row in (await session.execute(statement)).all()]
