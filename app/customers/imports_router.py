"""HTTP routes for bulk intake of balances and holdings (the nightly core-banking feed) and its progress."""

from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from app.core.db import SessionDep
from app.core.errors import InvalidInput, problem_responses
from app.core.idempotency import IdempotencyKeyHeader
from app.core.security import Scope, require_scope
from app.core.strict import ParamInteger
from app.customers import holdings_import
from app.customers.import_lines import FORMATS
from app.customers.intake_schemas import HoldingImportRead

imports_router = APIRouter(prefix="/v1/holdings", tags=["customers"], responses=problem_responses(401, 403))

_NDJSON_EXAMPLE = (
    '{"customer_id": "C00000042", "product_code": "current_account", "opened_at": "2012-06-01", '
    '"balance": "8450.20", "as_of": "2026-11-22"}\n'
    '{"customer_id": "C00000042", "product_code": "term_deposit_12m", "balance": "50000.00", "as_of": "2026-11-22"}\n'
)
_CSV_EXAMPLE = (
    "customer_id,product_code,opened_at,balance,as_of\n"
    "C00000042,current_account,2012-06-01,8450.20,2026-11-22\n"
    "C00000042,term_deposit_12m,,50000.00,2026-11-22\n"
)


async def _read(session, import_id: int) -> HoldingImportRead:
    record, rejections = await holdings_import.get_import(session, import_id)
    return HoldingImportRead.model_validate({**record.__dict__, "rejections": rejections})


@imports_router.post(
    "/import",
    summary="Import balances and holdings (NDJSON or CSV)",
    status_code=status.HTTP_201_CREATED,
    response_model=HoldingImportRead,
    dependencies=[require_scope(Scope.CUSTOMERS_WRITE)],
    responses={
        200: {"model": HoldingImportRead, "description": "The same file was imported before: that import"},
        201: {
            "description": "Imported",
            "headers": {"Location": {"description": "The import's progress.", "schema": {"type": "string"}}},
        },
        **problem_responses(422),
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/x-ndjson": {
                    "schema": {"type": "string", "format": "binary", "description": "One HoldingImportLine a line."},
                    "example": _NDJSON_EXAMPLE,
                },
                "text/csv": {
                    "schema": {
                        "type": "string",
                        "format": "binary",
                        "description": "A header naming customer_id, product_code, balance, as_of and optionally "
                        "opened_at, then one holding a line.",
                    },
                    "example": _CSV_EXAMPLE,
                },
            },
        }
    },
)
async def import_holdings(
    request: Request,
    response: Response,
    session: SessionDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> HoldingImportRead:
    """Replace the holdings of many customers from one file, streamed: each line is one holding of one customer,
    and a customer's lines are their complete product set (as PUT /v1/customers/{customer_id}/holdings takes it).
    Lines are validated one by one: good customers are merged even when other lines are rejected, and each
    rejection names its line and field; a customer with a rejected line keeps their holdings. Merged in chunks of
    customers, each committed with the customers' new tiers; follow progress at GET /v1/holdings/imports/{id}.
    The same file sent again changes nothing, or resumes an import that stopped (200 with that import). With an
    Idempotency-Key, a retry gets that import again; the same key with another file is a 422."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type not in FORMATS:
        raise InvalidInput("content-type", f"must be one of {', '.join(sorted(FORMATS))}", location="header")
    sessionmaker = request.app.state.sessionmaker
    principal = request.state.principal
    staged = await holdings_import.stage(
        sessionmaker,
        request.stream(),
        FORMATS[media_type],
        principal.name,
        api_key_id=principal.key_id,
        idempotency_key=idempotency_key,
    )
    await holdings_import.merge(sessionmaker, staged.import_id, workers=request.app.state.settings.tier_run_workers)
    response.headers["Location"] = f"/v1/holdings/imports/{staged.import_id}"
    if not staged.created:
        response.status_code = status.HTTP_200_OK
    if staged.replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return await _read(session, staged.import_id)


@imports_router.get(
    "/imports/{import_id}",
    summary="Get a holdings import's progress",
    response_model=HoldingImportRead,
    dependencies=[require_scope(Scope.CUSTOMERS_WRITE)],
    responses=problem_responses(404),
)
async def get_holdings_import(
    import_id: Annotated[ParamInteger(1, 2**62), Path(examples=[7])], session: SessionDep
) -> HoldingImportRead:
    """An import's status and progress (customers merged so far) and its first rejections."""
    return await _read(session, import_id)
