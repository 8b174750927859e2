"""Contribution margins (what each product earns the bank, data the bank sets) and the churn model's versions."""

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.pagination import PageRequest, keyset
from app.products.errors import ProductNotFound
from app.products.models import Product
from app.reports.models import ChurnModel, ContributionMargin
from app.reports.schemas import ChurnModelRead, ContributionMarginRead, ContributionMarginSet

# The demo bank's margins, by product category: a deposit's spread, a fund's or portfolio's fee, a loan's or card's
# spread, with a monthly fee on cards and current accounts. A bank sets its own per product.
DEMO_MARGINS = {
    "deposit": ("0.012", "0"),
    "wealth": ("0.009", "0"),
    "fund": ("0.011", "0"),
    "insurance": ("0.004", "0"),
    "loan": ("0.025", "0"),
    "card": ("0.12", "2.00"),
}


async def load_demo_margins(session: AsyncSession) -> int:
    """A margin for every product without one, by its category (DEMO_MARGINS); how many were set."""
    rows = (await session.execute(select(Product.code, Product.category))).all()
    existing = set((await session.scalars(select(ContributionMargin.product_code))).all())
    values = [
        {
            "product_code": code,
            "margin_rate": Decimal(DEMO_MARGINS[category][0]),
            "monthly_fee": Decimal(DEMO_MARGINS[category][1]),
        }
        for code, category in rows
        if code not in existing and category in DEMO_MARGINS
    ]
    if values:
        await session.execute(insert(ContributionMargin).values(values))
    return len(values)


async def list_margins(session: AsyncSession) -> list[ContributionMarginRead]:
    rows = await session.scalars(select(ContributionMargin).order_by(ContributionMargin.product_code))
    return [ContributionMarginRead.model_validate(row, from_attributes=True) for row in rows]


async def set_margin(
    session: AsyncSession, product_code: str, body: ContributionMarginSet
) -> tuple[ContributionMarginRead | None, ContributionMarginRead]:
    """Set a product's margin (404 for an unknown product); the margin before (None: new) and after."""
    if await session.scalar(select(Product.id).where(Product.code == product_code)) is None:
        raise ProductNotFound(product_code)
    before = await session.get(ContributionMargin, product_code)
    previous = ContributionMarginRead.model_validate(before, from_attributes=True) if before else None
    now = datetime.now(UTC)
    values = {"margin_rate": body.margin_rate, "monthly_fee": body.monthly_fee, "updated_at": now}
    statement = insert(ContributionMargin).values(product_code=product_code, **values)
    await session.execute(statement.on_conflict_do_update(index_elements=["product_code"], set_=values))
    return previous, ContributionMarginRead(product_code=product_code, **values)


async def list_churn_models(session: AsyncSession, page: PageRequest) -> list[ChurnModel]:
    return list((await session.scalars(keyset(select(ChurnModel), ChurnModel.version, page, descending=True))).all())


def churn_model_read(row: ChurnModel) -> ChurnModelRead:
    return ChurnModelRead.model_validate(row, from_attributes=True)
