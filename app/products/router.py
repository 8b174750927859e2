"""HTTP routes for the product catalog: what can be recommended, to whom, where and how hard to push it."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app.audit.service import record_change
from app.audit.writes import AuditedWrite
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.etag import CONDITIONAL_GET_RESPONSES, CONDITIONAL_WRITE_RESPONSES, PATCH_RESPONSES, ConditionalGet
from app.core.idempotency import creates
from app.core.pagination import DEFAULT_PAGE_SIZE, CursorParam, LimitParam, Page, decode_cursor
from app.core.security import Scope, require_scope
from app.core.strict import QueryBoolean
from app.products import service
from app.products.schemas import Channel, ProductCategory, ProductCreate, ProductRead, ProductUpdate

router = APIRouter(prefix="/v1/products", tags=["products"])

ProductCodePath = Annotated[
    str,
    Path(
        alias="product_code",
        max_length=40,
        description="The product code, e.g. `term_deposit_12m`.",
        examples=["term_deposit_12m"],
    ),
]


@creates(
    router,
    "",
    summary="Add a product",
    location="/v1/products/{product_code}",
    response_model=ProductRead,
    dependencies=[require_scope(Scope.PRODUCTS_WRITE)],
    responses=problem_responses(401, 403, 409, 422),
)
async def create_product(body: ProductCreate, session: SessionDep, request: Request) -> ProductRead:
    """Add a product to the catalog.

    The product becomes a recommendation candidate for customers who pass its `eligibility` condition,
    are in one of its `target_tiers` (empty: all tiers), tolerate its risk level and are reached through one of
    its `channels`, within its `active_from`..`active_to` window. `value_weight` and `lever` multiply its
    score in the ranking. Amounts are decimals (send them as strings to keep every digit); times must carry
    a timezone. A code already in the catalog, even on a deactivated product, is a 409.
    """
    created = ProductRead.model_validate(await service.create_product(session, body))
    await record_change(session, request, "product.create", "product", created.product_code, None, created)
    return created


@router.get(
    "",
    summary="List products",
    response_model=Page[ProductRead],
    dependencies=[require_scope(Scope.PRODUCTS_READ)],
    responses=problem_responses(401, 403, 422),
)
async def list_products(
    session: SessionDep,
    category: Annotated[ProductCategory | None, Query(description="Only products of this category.")] = None,
    channel: Annotated[Channel | None, Query(description="Only products offered on this channel.")] = None,
    active: Annotated[
        QueryBoolean | None,
        Query(
            description="true: only active products; false: only deactivated ones; omitted: both. "
            "This is the on/off switch, not the active_from..active_to window."
        ),
    ] = None,
    cursor: CursorParam = None,
    limit: LimitParam = DEFAULT_PAGE_SIZE,
) -> Page[ProductRead]:
    """Page through the catalog in creation order, optionally filtered.

    To show what a mobile channel can offer, ask for `channel=mobile&active=true`. Follow `next_cursor`
    until it is null; new products land on later pages, so a walk never skips or repeats one.
    """
    rows, next_cursor = await service.list_products(
        session, category=category, channel=channel, is_active=active, after_id=decode_cursor(cursor), limit=limit
    )
    return Page[ProductRead](items=[ProductRead.model_validate(row) for row in rows], next_cursor=next_cursor)


@router.get(
    "/{product_code}",
    summary="Get a product",
    response_model=ProductRead,
    dependencies=[require_scope(Scope.PRODUCTS_READ)],
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(401, 403, 404)},
)
async def get_product(code: ProductCodePath, session: SessionDep, conditional: ConditionalGet) -> ProductRead:
    """One product by its code, active or not (a customer may still hold a deactivated product), with its ETag
    (If-None-Match: 304 while unchanged; If-Match on PATCH and DELETE: change it safely)."""
    return conditional.respond(ProductRead.model_validate(await service.get_product(session, code)))


@router.patch(
    "/{product_code}",
    summary="Change a product",
    response_model=ProductRead,
    dependencies=[require_scope(Scope.PRODUCTS_WRITE)],
    responses={**PATCH_RESPONSES, **problem_responses(401, 403, 404, 422)},
)
async def update_product(
    code: ProductCodePath, body: ProductUpdate, session: SessionDep, write: AuditedWrite
) -> ProductRead:
    """Change some fields of a product; omitted fields keep their values.

    The same rules as on creation apply, and the sales window is checked against the stored values (moving
    `active_to` before the stored `active_from` is a 409 naming `/active_to`; both sent out of order, a 422). Send
    null to clear `active_from`, `active_to` or `eligibility`; the code cannot change. `{"is_active": true}`
    reactivates a product. With If-Match, only if nobody changed the product since you read it (412).
    """
    before = ProductRead.model_validate(await service.get_product(session, code, lock=True))

    async def update() -> ProductRead:
        return ProductRead.model_validate(await service.update_product(session, code, body))

    return await write.update("product.update", "product", code, before, update)


@router.delete(
    "/{product_code}",
    summary="Deactivate a product",
    response_model=ProductRead,
    dependencies=[require_scope(Scope.PRODUCTS_WRITE)],
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(401, 403, 404)},
)
async def deactivate_product(code: ProductCodePath, session: SessionDep, write: AuditedWrite) -> ProductRead:
    """Deactivate a product: it is no longer recommended, but stays readable.

    Products are never deleted, since holdings and feedback refer to them. Deactivating twice is harmless
    and returns the product each time; reactivate with PATCH `{"is_active": true}`.
    """
    before = ProductRead.model_validate(await service.get_product(session, code, lock=True))

    async def deactivate() -> ProductRead:
        return ProductRead.model_validate(await service.deactivate_product(session, code))

    return await write.update("product.deactivate", "product", code, before, deactivate)
