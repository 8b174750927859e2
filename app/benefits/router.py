"""HTTP routes for benefits: the catalogue (admin writes, audited, each change a kept revision), a customer's
benefits with the gap to the next tier, uses, and the take-up report."""

from contextlib import nullcontext
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from app.audit import service as audit_service
from app.audit.writes import AuditedWrite
from app.benefits import service, uses
from app.benefits.customer import customer_benefits
from app.benefits.schemas import (
    BenefitCreate,
    BenefitKind,
    BenefitRead,
    BenefitRevisionRead,
    BenefitUpdate,
    BenefitUseCreate,
    BenefitUseRead,
    CustomerBenefits,
    TakeUpReport,
)
from app.core.db import ReadSessionDep, SessionDep, driver_connection
from app.core.errors import problem_responses
from app.core.etag import CONDITIONAL_GET_RESPONSES, CONDITIONAL_WRITE_RESPONSES, PATCH_RESPONSES, ConditionalGet
from app.core.hotpath import HotRead
from app.core.i18n import RequestLanguage, language_headers
from app.core.idempotency import creates
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.serializers import document_serializer
from app.core.strict import BIGINT_MAX, NO_NUL_PATTERN, ParamInteger, QueryBoolean
from app.customers.schemas import EXTERNAL_ID_PATTERN, ExternalIdPath
from app.reports.router import FromParam, ToParam, time_range

CUSTOMER_BENEFITS_JSON = document_serializer(CustomerBenefits)  # the schema's JSON, written from dicts
router = APIRouter(prefix="/v1/benefits", tags=["benefits"], responses=problem_responses(401, 403))
customer_router = APIRouter(prefix="/v1/customers", tags=["benefits"], responses=problem_responses(401, 403))
reports_router = APIRouter(prefix="/v1/reports", tags=["reports"], responses=problem_responses(401, 403))

CodePath = Annotated[
    str,
    Path(
        alias="benefit_code",
        max_length=40,
        description="The benefit code, e.g. `airport-lounge`.",
        examples=["airport-lounge"],
    ),
]
UseId = Annotated[ParamInteger(1, BIGINT_MAX), Path(description="The use's id.", examples=[1])]


@creates(
    router,
    "",
    summary="Add a benefit",
    location="/v1/benefits/{code}",
    audit=audit_service.created("benefit.create", "benefit", "code"),
    response_model=BenefitRead,
    dependencies=[require_scope(Scope.BENEFITS_WRITE)],
    responses=problem_responses(409, 422),
)
async def create_benefit(body: BenefitCreate, session: SessionDep, request: Request) -> BenefitRead:
    """Add a benefit to the catalogue and attach it to tiers of policies (each optionally with an extra condition in
    the rule language, e.g. only in the birthday month). Texts are data per language. Revision 1 is kept."""
    return await service.create_benefit(session, body, request.state.principal.name)


@router.get(
    "",
    summary="List benefits",
    response_model=Page[BenefitRead],
    dependencies=[require_scope(Scope.BENEFITS_READ)],
    responses=problem_responses(422),
)
async def list_benefits(
    session: SessionDep,
    page: PageParams,
    kind: Annotated[BenefitKind | None, Query(description="Only benefits of this kind.")] = None,
    policy_key: Annotated[
        str | None, Query(max_length=40, description="Only benefits attached to this policy.")
    ] = None,
    tier: Annotated[str | None, Query(max_length=40, description="Only benefits attached to this tier.")] = None,
    active: Annotated[QueryBoolean | None, Query(description="true: active only; false: deactivated only.")] = None,
) -> Page[BenefitRead]:
    """The catalogue in creation order, filtered; follow `next_cursor`."""
    rows = await service.list_benefits(session, page, kind=kind, policy_key=policy_key, tier=tier, active=active)
    return Page[BenefitRead].of(rows, page, BenefitRead.model_validate)


@router.get(
    "/{benefit_code}",
    summary="Get a benefit",
    response_model=BenefitRead,
    dependencies=[require_scope(Scope.BENEFITS_READ)],
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(404)},
)
async def get_benefit(code: CodePath, session: SessionDep, conditional: ConditionalGet) -> BenefitRead:
    """One benefit, active or not, with its ETag."""
    return conditional.respond(BenefitRead.model_validate(await service.get_benefit(session, code)))


@router.patch(
    "/{benefit_code}",
    summary="Change a benefit",
    response_model=BenefitRead,
    dependencies=[require_scope(Scope.BENEFITS_WRITE)],
    responses={**PATCH_RESPONSES, **problem_responses(404, 422)},
)
async def update_benefit(
    code: CodePath, body: BenefitUpdate, session: SessionDep, request: Request, write: AuditedWrite
) -> BenefitRead:
    """Change some fields; each change is a new revision (GET .../revisions). A field that breaks a rule with the
    stored ones (`valid_to` before the stored `valid_from`, `usage_limit` without a stored `usage_period`) is a 409
    naming it. With If-Match, only if unchanged."""
    benefit = await service.get_benefit(session, code, lock=True)
    before = BenefitRead.model_validate(benefit)
    actor = request.state.principal.name
    return await write.update(
        "benefit.update", "benefit", code, before, lambda: service.update_benefit(session, benefit, body, actor)
    )


@router.delete(
    "/{benefit_code}",
    summary="Deactivate a benefit",
    response_model=BenefitRead,
    dependencies=[require_scope(Scope.BENEFITS_WRITE)],
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(404)},
)
async def deactivate_benefit(code: CodePath, session: SessionDep, request: Request, write: AuditedWrite) -> BenefitRead:
    """Deactivate a benefit: no longer in force for anyone; kept, since uses refer to it. Idempotent."""
    benefit = await service.get_benefit(session, code, lock=True)
    before = BenefitRead.model_validate(benefit)
    actor = request.state.principal.name
    return await write.update(
        "benefit.deactivate", "benefit", code, before, lambda: service.deactivate_benefit(session, benefit, actor)
    )


@router.get(
    "/{benefit_code}/revisions",
    summary="List a benefit's revisions",
    response_model=Page[BenefitRevisionRead],
    dependencies=[require_scope(Scope.BENEFITS_READ)],
    responses=problem_responses(404, 422),
)
async def list_benefit_revisions(code: CodePath, session: SessionDep, page: PageParams) -> Page[BenefitRevisionRead]:
    """Every revision, oldest first: the benefit as it read after each change, who made it and when."""
    benefit = await service.get_benefit(session, code)
    rows = await service.list_revisions(session, benefit, page)
    return Page[BenefitRevisionRead].of(rows, page, BenefitRevisionRead.model_validate)


async def render_customer_benefits(connection, sessionmaker, customer_id: str, language: str, default: str) -> bytes:
    """The CustomerBenefits document as JSON in `language` (negotiated, app/core/i18n.py), on a driver connection
    (routed and hot paths alike)."""
    document = await customer_benefits(connection, sessionmaker, customer_id, language, default)
    return CUSTOMER_BENEFITS_JSON.to_json(document)


@customer_router.get(
    "/{customer_id}/benefits",
    summary="Get a customer's benefits",
    response_model=CustomerBenefits,
    dependencies=[require_scope(Scope.BENEFITS_READ)],
    responses=problem_responses(404, 422),
)
async def get_customer_benefits(
    customer_id: ExternalIdPath, session: ReadSessionDep, language: RequestLanguage, request: Request
) -> Response:
    """What the customer's tiers give now (why, and the uses left this period), what a pending downgrade would take
    away and by when (with what keeps the tier), and per policy the next tier up: what it gives and the gap, every
    condition of its rule with the customer's value (as GET .../tiers explains it), the threshold and the distance
    (the cheapest way for `any`; conditions only time or nobody can close are said so)."""
    default = request.app.state.settings.default_language
    document = await render_customer_benefits(
        await driver_connection(session), lambda: nullcontext(session), customer_id, language, default
    )
    return Response(document, media_type="application/json", headers=language_headers(language))


# Served in front of the router (app/core/hotpath.py), like GET .../tiers: the app's tier page reads it.
HOT_READS = [
    HotRead(
        "/v1/customers/{customer_id}/benefits",
        Scope.BENEFITS_READ,
        {"customer_id": EXTERNAL_ID_PATTERN},
        lambda connection, state, language, **arguments: render_customer_benefits(
            connection, state.sessionmaker, language=language, default=state.settings.default_language, **arguments
        ),
        language=True,
    )
]


@creates(
    customer_router,
    "/{customer_id}/benefits/{benefit_code}/uses",
    summary="Record a benefit use",
    location="/v1/customers/{customer_id}/benefit-uses/{id}",
    response_model=BenefitUseRead,
    dependencies=[require_scope(Scope.BENEFITS_USE)],
    responses=problem_responses(404, 409, 422),
)
async def use_benefit(
    customer_id: ExternalIdPath,
    benefit_code: CodePath,
    body: BenefitUseCreate,
    session: SessionDep,
) -> BenefitUseRead:
    """Count one use of a benefit in force for the customer (send an Idempotency-Key: a retry is counted once;
    the body may be `{}`).
    409 when the customer is not entitled now, or when the period's limit is used up (concurrent uses never pass
    it). A benefit.used webhook event is written in the same transaction."""
    return await uses.record_use(session, customer_id, benefit_code, body.channel)


@customer_router.get(
    "/{customer_id}/benefit-uses",
    summary="List a customer's benefit uses",
    response_model=Page[BenefitUseRead],
    dependencies=[require_scope(Scope.BENEFITS_READ)],
    responses=problem_responses(404, 422),
)
async def list_benefit_uses(
    customer_id: ExternalIdPath,
    session: ReadSessionDep,
    page: PageParams,
    benefit_code: Annotated[str | None, Query(max_length=40, description="Only uses of this benefit.")] = None,
) -> Page[BenefitUseRead]:
    """The customer's uses, newest first; follow `next_cursor`."""
    rows = await uses.list_uses(session, customer_id, page, benefit_code)
    return Page[BenefitUseRead].of(rows, page)


@customer_router.get(
    "/{customer_id}/benefit-uses/{use_id}",
    summary="Get a benefit use",
    response_model=BenefitUseRead,
    dependencies=[require_scope(Scope.BENEFITS_READ)],
    responses=problem_responses(404),
)
async def get_benefit_use(customer_id: ExternalIdPath, use_id: UseId, session: SessionDep) -> BenefitUseRead:
    """One use of the customer's."""
    return await uses.get_use(session, customer_id, use_id)


@reports_router.get(
    "/benefit-take-up",
    summary="Benefit take-up report",
    response_model=TakeUpReport,
    dependencies=[require_scope(Scope.REPORTS_READ)],
    responses=problem_responses(422),
)
async def benefit_take_up(
    session: ReadSessionDep,
    from_: FromParam = None,
    to: ToParam = None,
    benefit_code: Annotated[
        str | None, Query(max_length=40, pattern=NO_NUL_PATTERN, description="Only this benefit.")
    ] = None,
    policy_key: Annotated[
        str | None, Query(max_length=40, pattern=NO_NUL_PATTERN, description="Only tiers of this policy.")
    ] = None,
) -> TakeUpReport:
    """Per benefit and tier it is attached to: customers holding the tier now, distinct customers who used it
    through that tier in [from, to), uses, and the take-up rate (users / holders)."""
    start, end = time_range(from_, to)
    return await uses.take_up(session, start, end, code=benefit_code, policy=policy_key)
