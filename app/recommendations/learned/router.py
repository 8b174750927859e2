"""HTTP routes for the learned ranker's model versions (admin only): list and read them, serve one, roll back.
Serving and rollback are audited; the offer states are scored by the new serving version at their next refresh
(app/recommendations/learned/serving.py), and until then rank by the rule-based propensity."""

from datetime import date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Path, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.orm import defer

from app.audit import service as audit_service
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.pagination import Page, PageParams, keyset
from app.core.security import Scope, require_scope
from app.core.strict import ParamInteger
from app.recommendations.learned import registry
from app.recommendations.learned.models import RankerModel

router = APIRouter(
    prefix="/v1/ranker-models",
    tags=["ranker-models"],
    dependencies=[require_scope(Scope.ADMIN)],
    responses=problem_responses(401, 403),
)

VersionPath = Annotated[ParamInteger(1, 2**31 - 1), Path(description="The model version.", examples=[1])]


class RankerModelRead(BaseModel):
    version: int
    status: str = Field(description="serving (one at most), retired (served before) or candidate (never served).")
    trained_at: datetime
    trained_by: str
    window_from: date = Field(description="The first month whose adds were labels.")
    window_until: date = Field(description="The last month whose adds were labels.")
    seed: int
    features: list[str]
    products: list[str] = Field(description="The products the model scores; the others rank by the rule-based score.")
    metrics: dict[str, Any] = Field(description="Held-out metrics: map7, brier, ece, ...")
    model_sha256: str
    served_at: datetime | None


def _read(row: RankerModel) -> RankerModelRead:
    return RankerModelRead(
        version=row.version,
        status=row.status,
        trained_at=row.trained_at,
        trained_by=row.trained_by,
        window_from=row.window_from,
        window_until=row.window_until,
        seed=row.seed,
        features=row.features,
        products=row.products,
        metrics=row.metrics,
        model_sha256=row.model_sha256,
        served_at=row.served_at,
    )


@router.get(
    "", summary="List ranker model versions", response_model=Page[RankerModelRead], responses=problem_responses(422)
)
async def list_ranker_models(session: SessionDep, page: PageParams) -> Page[RankerModelRead]:
    """Every trained version, newest first (follow `next_cursor`), without the model's bytes."""
    query = select(RankerModel).options(defer(RankerModel.model))
    rows = list(await session.scalars(keyset(query, RankerModel.version, page, descending=True)))
    return Page[RankerModelRead].of(rows, page, _read, key_of=lambda row: (row.version,))


@router.get(
    "/{version}",
    summary="Get a ranker model version",
    response_model=RankerModelRead,
    responses=problem_responses(404, 422),
)
async def get_ranker_model(version: VersionPath, session: SessionDep) -> RankerModelRead:
    """One version: its window, features, products and held-out metrics."""
    row = await session.get(RankerModel, version, options=[defer(RankerModel.model)])
    if row is None:
        raise registry.RankerModelNotFound(version)
    return _read(row)


async def _serving_version(session) -> int | None:
    return await session.scalar(select(RankerModel.version).where(RankerModel.status == "serving"))


async def _audited(session, request: Request, action: str, before: int | None, row: RankerModel) -> RankerModelRead:
    await audit_service.record(
        session,
        request.state.principal.name,
        action,
        "ranker_model",
        row.version,
        {"serving_version": before},
        {"serving_version": row.version},
    )
    request.app.state.recommender.invalidate_stats()
    return _read(row)


@router.post(
    "/rollback",
    summary="Roll back the serving ranker model",
    response_model=RankerModelRead,
    responses=problem_responses(409),
)
async def rollback_ranker_model(session: SessionDep, request: Request) -> RankerModelRead:
    """Serve again the version that served before the current one (409 when there is none)."""
    before = await _serving_version(session)
    row = await registry.rollback(session)
    return await _audited(session, request, "ranker_model.rollback", before, row)


@router.post(
    "/{version}/serve",
    summary="Serve a ranker model version",
    response_model=RankerModelRead,
    responses=problem_responses(404, 422),
)
async def serve_ranker_model(version: VersionPath, session: SessionDep, request: Request) -> RankerModelRead:
    """Make this version the serving one (the one serving now is retired)."""
    before = await _serving_version(session)
    row = await registry.serve_version(session, version)
    return await _audited(session, request, "ranker_model.serve", before, row)
