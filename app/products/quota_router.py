"""HTTP routes for product quotas (额度): a product's caps per period, set by an admin, and what they have sold."""

from typing import Annotated

from fastapi import APIRouter, Path, Response

from app.audit.writes import AuditedWrite
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.etag import CONDITIONAL_GET_RESPONSES, CONDITIONAL_WRITE_RESPONSES, ConditionalGet
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.products import quotas
from app.products.errors import QuotaNotFound
from app.products.quota_schemas import QuotaIn, QuotaRead, QuotaUsage

ProductCodePath = Annotated[
    str,
    Path(
        alias="product_code",
        max_length=40,
        description="The product code, e.g. `credit_card_platinum` (the demo bank caps it at 1,000 a month).",
        examples=["credit_card_platinum"],
    ),
]

router = APIRouter(prefix="/v1/products/{product_code}/quota", tags=["products"])
usage_router = APIRouter(prefix="/v1/product-quotas", tags=["products"])


def _read(usage: quotas.Usage) -> QuotaRead:
    return QuotaRead(
        product_code=usage.product_code, period=usage.period, cap_count=usage.cap_count, cap_amount=usage.cap_amount
    )


def _usage(usage: quotas.Usage) -> QuotaUsage:
    return QuotaUsage(
        product_code=usage.product_code,
        period=usage.period,
        period_start=usage.period_start,
        period_end=usage.period_end,
        cap_count=usage.cap_count,
        cap_amount=usage.cap_amount,
        sold_count=usage.sold_count,
        sold_amount=usage.sold_amount,
        remaining_count=None if usage.cap_count is None else max(usage.cap_count - usage.sold_count, 0),
        remaining_amount=None if usage.cap_amount is None else max(usage.cap_amount - usage.sold_amount, 0),
        over_cap_count=usage.over_cap_count,
        sold_out=usage.sold_out,
        sold_out_at=usage.sold_out_at,
    )


@router.get(
    "",
    summary="Get a product's quota",
    response_model=QuotaRead,
    dependencies=[require_scope(Scope.PRODUCTS_READ)],
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(401, 403, 404)},
)
async def get_quota(code: ProductCodePath, session: SessionDep, conditional: ConditionalGet) -> QuotaRead:
    """The product's caps per period, with their ETag (If-Match on PUT and DELETE: change them safely). What the
    current period has sold: GET /v1/product-quotas."""
    return conditional.respond(_read(await quotas.get_quota(session, code)))


@router.put(
    "",
    summary="Set a product's quota",
    response_model=QuotaRead,
    dependencies=[require_scope(Scope.PRODUCTS_WRITE)],
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(401, 403, 404, 422)},
)
async def put_quota(code: ProductCodePath, body: QuotaIn, session: SessionDep, write: AuditedWrite) -> QuotaRead:
    """Cap a product's conversions (feedback convert events and new holdings, each customer once per period) by
    count and/or amount, per month, quarter, year (UTC calendar) or lifetime (audited). When a cap is reached the
    product is left out of recommendations (filter `sold_out`) until the next period opens or the cap is raised;
    conversions past it are still recorded. Served lists never use a quota. With If-Match, only if nobody changed
    the quota since you read it (412)."""
    try:
        before = _read(await quotas.get_quota(session, code, lock=True))
    except QuotaNotFound:
        before = None

    async def put() -> QuotaRead:
        usage, _ = await quotas.put_quota(
            session, code, period=body.period, cap_count=body.cap_count, cap_amount=body.cap_amount
        )
        return _read(usage)

    action = "product_quota.create" if before is None else "product_quota.update"
    return await write.update(action, "product_quota", code, before, put)


@router.delete(
    "",
    summary="Remove a product's quota",
    status_code=204,
    dependencies=[require_scope(Scope.PRODUCTS_WRITE)],
    responses={**problem_responses(401, 403, 404, 412)},
)
async def delete_quota(code: ProductCodePath, session: SessionDep, write: AuditedWrite) -> Response:
    """The product is no longer capped (audited); what its quota counted goes with it. With If-Match, only if
    nobody changed the quota since you read it (412)."""
    before = _read(await quotas.get_quota(session, code, lock=True))
    return await write.delete(
        "product_quota.delete", "product_quota", code, before, lambda: quotas.delete_quota(session, code)
    )


@usage_router.get(
    "",
    summary="List quota usage",
    response_model=Page[QuotaUsage],
    dependencies=[require_scope(Scope.PRODUCTS_WRITE)],
    responses=problem_responses(401, 403, 422),
)
async def list_quota_usage(session: SessionDep, page: PageParams) -> Page[QuotaUsage]:
    """Every quota'd product with what the current period has sold against its caps, what remains, the conversions
    recorded past a cap, and whether it is sold out (admins)."""
    rows = await quotas.list_usage(session, after_id=page.after, limit=page.limit)
    return Page[QuotaUsage].of(rows, page, _usage)
