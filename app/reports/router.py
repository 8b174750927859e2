"""HTTP routes for reports (scope reports:read): tier distribution and migrations, the recommendation funnel,
satisfaction, retention, stickiness, contribution, per-manager performance and the churn model's versions; and the
products' contribution margins (read with products:read, set with products:write, audited)."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import TypeAdapter, ValidationError

from app.audit import service as audit_service
from app.core.db import ReadSessionDep, SessionDep
from app.core.errors import InvalidInput, problem_responses
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.strict import DAY_PATTERN, NO_NUL_PATTERN, TIME_PATTERN, YEARS, Timestamp
from app.reports import margins, service, value
from app.reports.schemas import (
    ChurnModelRead,
    ContributionMarginRead,
    ContributionMarginSet,
    ContributionReport,
    ManagerPerformance,
    RecommendationFunnel,
    RetentionReport,
    SatisfactionReport,
    StickinessReport,
    TierDistribution,
    TierMigrations,
)

router = APIRouter(
    prefix="/v1/reports",
    tags=["reports"],
    dependencies=[require_scope(Scope.REPORTS_READ)],
    responses=problem_responses(401, 403, 422),
)

DEFAULT_RANGE = timedelta(days=30)
PolicyParam = Annotated[
    str, Query(alias="policy_key", min_length=1, max_length=40, pattern=NO_NUL_PATTERN, description="Tier policy key.")
]  # no NUL: the database cannot hold it, so the schema says so rather than a 422 unannounced
# A date or a date-time, years 1900..2100 as app.core.strict bounds every moment (a range never overflows).
MOMENT_PATTERN = f"{DAY_PATTERN}|{TIME_PATTERN}"
_MOMENT = TypeAdapter(Timestamp)
FromParam = Annotated[
    str | None,
    Query(
        alias="from",
        max_length=40,
        pattern=MOMENT_PATTERN,
        examples=["2026-11-01", "2026-11-01T00:00:00Z"],
        description="Start (inclusive): an ISO date-time with a timezone, or a date (its start, UTC). "
        f"Default: 30 days before `to`; {YEARS}.",
    ),
]
ToParam = Annotated[
    str | None,
    Query(
        max_length=40,
        pattern=MOMENT_PATTERN,
        examples=["2026-11-30", "2026-12-01T00:00:00+01:00"],
        description="End (exclusive): an ISO date-time with a timezone, or a date (included whole, UTC). "
        f"Default: now; {YEARS}.",
    ),
]


def time_range(from_: str | None, to: str | None) -> tuple[datetime, datetime]:
    """[from, to) as aware datetimes: a date `from` is its start, a date `to` includes that whole day."""

    def aware(value: str, name: str, next_day: bool) -> datetime:
        try:
            if len(value) == 10:
                day = date.fromisoformat(value)
                return datetime.combine(day + timedelta(days=1 if next_day else 0), time(), UTC)
            return _MOMENT.validate_python(value)
        except (ValueError, ValidationError):
            raise InvalidInput(
                name,
                "must be a date (2026-11-01) or a date-time with a timezone (2026-11-01T00:00:00Z)",
                location="query",
            ) from None

    end = aware(to, "to", next_day=True) if to is not None else datetime.now(UTC)
    start = aware(from_, "from", next_day=False) if from_ is not None else end - DEFAULT_RANGE
    if start >= end:
        raise InvalidInput("from", "must be before `to`", location="query")
    return start, end


@router.get(
    "/tier-distribution",
    summary="Tier distribution report",
    response_model=TierDistribution,
    responses=problem_responses(404),
)
async def tier_distribution(session: ReadSessionDep, policy: PolicyParam = "wealth") -> TierDistribution:
    """Customers and their total AUM per effective tier of a policy (an unexpired override counts), now."""
    return TierDistribution.model_validate(await service.tier_distribution(session, policy))


@router.get(
    "/tier-migrations",
    summary="Tier migrations report",
    response_model=TierMigrations,
    responses=problem_responses(404),
)
async def tier_migrations(
    session: ReadSessionDep, policy: PolicyParam = "wealth", from_: FromParam = None, to: ToParam = None
) -> TierMigrations:
    """The matrix of moves between tiers of a policy in [from, to), from the change feed, with totals per
    direction (initial assignments have `from_tier` null)."""
    start, end = time_range(from_, to)
    return TierMigrations.model_validate(await service.tier_migrations(session, policy, start, end))


@router.get("/recommendation-funnel", summary="Recommendation funnel report", response_model=RecommendationFunnel)
async def recommendation_funnel(
    session: ReadSessionDep, from_: FromParam = None, to: ToParam = None
) -> RecommendationFunnel:
    """Per product and tier: recommendations seen, clicked, accepted and converted in [from, to) (each counted
    once, at its furthest stage), with rates over impressions and their 95% Wilson intervals; and the conversion
    rate of personalised recommendations (treatment) against the popularity holdout, with the uplift and its 95%
    interval."""
    start, end = time_range(from_, to)
    return RecommendationFunnel.model_validate(await service.recommendation_funnel(session, start, end))


@router.get(
    "/satisfaction", summary="Satisfaction report", response_model=SatisfactionReport, responses=problem_responses(404)
)
async def satisfaction(
    session: ReadSessionDep, policy: PolicyParam = "wealth", from_: FromParam = None, to: ToParam = None
) -> SatisfactionReport:
    """NPS (promoters% - detractors%, each customer's latest answer in the range) and average CSAT per tier of a
    policy; complaints opened in the range by status and category, and their median days to resolve."""
    start, end = time_range(from_, to)
    return SatisfactionReport.model_validate(await service.satisfaction(session, policy, start, end))


@router.get("/retention", summary="Retention report", response_model=RetentionReport, responses=problem_responses(404))
async def retention(
    session: SessionDep, policy: PolicyParam = "wealth", from_: FromParam = None, to: ToParam = None
) -> RetentionReport:
    """Per tier of a policy held at `from` (from the change feed: the target of each customer's latest move before
    it): its customers, those still customers at `to` in the same tier or above (retained, with the 95% Wilson
    interval of the share), upgraded, downgraded, and lost (erased, or without a tier at `to`)."""
    start, end = time_range(from_, to)
    return RetentionReport.model_validate(await value.retention(session, policy, start, end))


@router.get(
    "/stickiness", summary="Stickiness report", response_model=StickinessReport, responses=problem_responses(404)
)
async def stickiness(session: SessionDep, policy: PolicyParam = "wealth", to: ToParam = None) -> StickinessReport:
    """Per effective tier of a policy: customers, those active (logged in: a login event) on one of the 30 days
    ending on `to`'s day, and the share (active users over 30 days / customers)."""
    _, end = time_range(None, to)
    return StickinessReport.model_validate(await value.stickiness(session, policy, end - timedelta(microseconds=1)))


@router.get(
    "/contribution", summary="Contribution report", response_model=ContributionReport, responses=problem_responses(404)
)
async def contribution(
    session: SessionDep, policy: PolicyParam = "wealth", from_: FromParam = None, to: ToParam = None
) -> ContributionReport:
    """Per effective tier of a policy: the monthly contribution of its customers now (the contribution_monthly
    attribute: the bank's own figure when it feeds one, else balances x the products' margins), total and per
    customer; and the trend: each month in [from, to) derived from month-end balances and the margins, by tier."""
    start, end = time_range(from_, to)
    return ContributionReport.model_validate(await value.contribution(session, policy, start, end))


@router.get(
    "/relationship-managers",
    summary="Relationship-manager performance report",
    response_model=Page[ManagerPerformance],
    responses=problem_responses(404),
)
async def manager_performance(
    session: SessionDep,
    page: PageParams,
    policy: PolicyParam = "wealth",
    from_: FromParam = None,
    to: ToParam = None,
    team: Annotated[
        str | None, Query(min_length=1, max_length=100, pattern=NO_NUL_PATTERN, description="Only this team.")
    ] = None,
) -> Page[ManagerPerformance]:
    """Per manager of a policy, by id: customers served now; contacts made and tasks closed done (and on time: by
    their due date) in [from, to); the retention of the portfolio they served at `from` (same tier or above at
    `to`) and its tier upgrades, downgrades and net migration in the range. Follow `next_cursor`."""
    start, end = time_range(from_, to)
    rows = await value.managers(session, policy, start, end, team, page)
    return Page[ManagerPerformance].of(rows, page, key_of=lambda row: (row["id"],))


@router.get("/churn-models", summary="List churn model versions", response_model=Page[ChurnModelRead])
async def list_churn_models(session: SessionDep, page: PageParams) -> Page[ChurnModelRead]:
    """The churn model's versions, newest first (the features view scores churn_risk with the newest): its
    coefficients, what it was fitted on and its held-out AUC beside the rule of thumb's."""
    rows = await margins.list_churn_models(session, page)
    return Page[ChurnModelRead].of(rows, page, margins.churn_model_read, key_of=lambda row: (row.version,))


margins_router = APIRouter(prefix="/v1/contribution-margins", tags=["reports"], responses=problem_responses(401, 403))
ProductCodePath = Annotated[
    str,
    Path(
        alias="product_code",
        max_length=40,
        description="The product code, e.g. `term_deposit_12m`.",
        examples=["term_deposit_12m"],
    ),
]


@margins_router.get(
    "",
    summary="List contribution margins",
    response_model=Page[ContributionMarginRead],
    dependencies=[require_scope(Scope.PRODUCTS_READ)],
    responses=problem_responses(422),
)
async def list_margins(session: SessionDep, page: PageParams) -> Page[ContributionMarginRead]:
    """What each product earns the bank: an annual margin on the balance and a monthly fee, by product code."""
    return Page[ContributionMarginRead].of_sequence(await margins.list_margins(session), page)


@margins_router.put(
    "/{product_code}",
    summary="Set a product's contribution margin",
    response_model=ContributionMarginRead,
    dependencies=[require_scope(Scope.PRODUCTS_WRITE)],
    responses=problem_responses(404, 422),
)
async def set_margin(
    product_code: ProductCodePath, body: ContributionMarginSet, session: SessionDep, request: Request
) -> ContributionMarginRead:
    """The product's annual margin on balances (a deposit's or loan's spread, a fund's fee) and monthly fee, from
    which a customer's contribution is derived (unless the bank feeds its own figure). Audited."""
    before, after = await margins.set_margin(session, product_code, body)
    await audit_service.record(
        session,
        request.state.principal.name,
        "contribution_margin.set",
        "contribution_margin",
        product_code,
        before.model_dump(mode="json") if before else None,
        after.model_dump(mode="json"),
    )
    return after
