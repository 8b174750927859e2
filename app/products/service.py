"""Product catalog operations: create, read, update, list and deactivate; the session is flushed, never committed."""

from datetime import UTC, datetime

from sqlalchemy import any_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import unique_or_raise
from app.core.pagination import page_of
from app.core.patching import Patch, refusal
from app.products.errors import ProductCodeTaken, ProductNotFound
from app.products.models import Product
from app.products.schemas import ProductCreate, ProductUpdate
from app.rules import Condition, check_condition, dump_condition, load_catalog, parse_condition, referenced_attributes


def ensure_active_window(active_from: datetime | None, active_to: datetime | None, patch: Patch | None = None) -> None:
    """At /active_to unless the sales window ends after it starts: 422, or 409 when a PATCH moved one end past the
    stored other (app/core/patching.py)."""
    if active_from is not None and active_to is not None and active_to <= active_from:
        raise refusal(patch, "/active_to", "must be after active_from", reads=("active_from", "active_to"))


async def checked_eligibility(session: AsyncSession, condition: Condition | None) -> dict | None:
    """The condition as stored JSON, after checking its attributes and value types (422 at /eligibility/...)."""
    if condition is None:
        return None
    check_condition(condition, await load_catalog(session), "/eligibility")
    return dump_condition(condition)


async def find_product(session: AsyncSession, code: str, *, lock: bool = False) -> Product | None:
    query = select(Product).where(Product.code == code)
    return await session.scalar(query.with_for_update() if lock else query)


async def get_product(session: AsyncSession, code: str, *, lock: bool = False) -> Product:
    """A product by code; `lock`: its row locked for this transaction (a write that checks If-Match first)."""
    product = await find_product(session, code, lock=lock)
    if product is None:
        raise ProductNotFound(code)
    return product


async def create_product(session: AsyncSession, fields: ProductCreate) -> Product:
    ensure_active_window(fields.active_from, fields.active_to)
    if await find_product(session, fields.product_code) is not None:
        raise ProductCodeTaken(fields.product_code)
    values = fields.model_dump(exclude={"product_code"}) | {"code": fields.product_code}
    values["eligibility"] = await checked_eligibility(session, fields.eligibility)
    product = Product(**values)
    async with unique_or_raise(session, ProductCodeTaken(fields.product_code)):
        session.add(product)
        await session.flush()
    await session.refresh(product)
    return product


async def update_product(session: AsyncSession, code: str, changes: ProductUpdate) -> Product:
    product = await get_product(session, code)
    patch = Patch.of(product, changes)
    updates = patch.changes
    if not updates:
        return product
    ensure_active_window(patch["active_from"], patch["active_to"], patch)
    if "eligibility" in updates:
        updates["eligibility"] = await checked_eligibility(session, changes.eligibility)
    for field, value in updates.items():
        setattr(product, field, value)
    product.updated_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(product)  # the stored values (e.g. numeric scale), as a later read returns them
    return product


async def deactivate_product(session: AsyncSession, code: str) -> Product:
    """Switch a product off; idempotent. Products are never deleted: holdings and feedback refer to them."""
    product = await get_product(session, code)
    if product.is_active:
        product.is_active = False
        product.updated_at = datetime.now(UTC)
        await session.flush()
    return product


async def products_reading_attribute(session: AsyncSession, name: str) -> list[str]:
    """The products ("product CODE") whose eligibility reads the attribute: its type must not change under them."""
    rows = await session.execute(
        select(Product.code, Product.eligibility).where(Product.eligibility.is_not(None)).order_by(Product.code)
    )
    return [  # JSON null (a product created with eligibility: null) is no condition either
        f"product {code}"
        for code, eligibility in rows
        if eligibility is not None and name in referenced_attributes(parse_condition(eligibility))
    ]


async def list_products(
    session: AsyncSession,
    *,
    category: str | None = None,
    channel: str | None = None,
    is_active: bool | None = None,
    after_id: int | None = None,
    limit: int,
) -> tuple[list[Product], str | None]:
    """One page of products in id order and the cursor of the next page (None on the last page)."""
    query = select(Product).order_by(Product.id).limit(limit + 1)
    if category is not None:
        query = query.where(Product.category == category)
    if channel is not None:
        query = query.where(any_(Product.channels) == channel)
    if is_active is not None:
        query = query.where(Product.is_active.is_(is_active))
    if after_id is not None:
        query = query.where(Product.id > after_id)
    return page_of(list((await session.scalars(query)).all()), limit)
