"""HTTP routes for reports (scope reports:read): tier distribution and migrations, the recommendation funnel,
satisfaction."""

from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import TypeAdapter, ValidationError

from app.core.db import ReadSessionDep
from app.core.errors import InvalidInput, problem_responses
from app.core.security import Scope, require_scope
from app.core.strict import DAY_PATTERN, TIME_PATTERN, YEARS, Timestamp
from app.reports import service
from app.reports.schemas import RecommendationFunnel, SatisfactionReport, TierDistribution, TierMigrations

router = APIRouter(
    prefix="/v1/reports",
    tags=["reports"],
    dependencies=[require_scope(Scope.REPORTS_READ)],
    responses=problem_responses(401, 403, 422),
)

DEFAULT_RANGE = timedelta(days=30)
PolicyParam = Annotated[str, Query(alias="policy_key", min_length=1, max_length=40, description="Tier policy key.")]
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
