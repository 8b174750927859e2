"""HTTP routes for batch tier runs: start one over every customer, follow its progress."""

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Path, Query, Request, status

from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.idempotency import creates
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.strict import ParamInteger
from app.tiering import policies, runs
from app.tiering.assignment.schemas import TierRunCreate, TierRunRead
from app.tiering.schemas import TierRunStatus

runs_router = APIRouter(prefix="/v1/tier-runs", tags=["tier-runs"], responses=problem_responses(401, 403))


@creates(
    runs_router,
    "",
    summary="Start a batch tier run",
    status_code=status.HTTP_202_ACCEPTED,
    location="/v1/tier-runs/{id}",
    response_model=TierRunRead,
    dependencies=[require_scope(Scope.POLICIES_WRITE)],
    responses=problem_responses(404, 409, 422),
)
async def start_tier_run(
    body: TierRunCreate, session: SessionDep, request: Request, background: BackgroundTasks
) -> TierRunRead:
    """Evaluate every customer under one policy (or all active ones) in the background; follow it at
    GET /v1/tier-runs/{id}. One run per policy at a time (409 while one runs)."""
    policy = await policies.get_policy(session, body.policy_key) if body.policy_key else None
    run = await runs.start_run(session, policy, request.state.principal.name)
    background.add_task(
        runs.execute_run,
        request.app.state.sessionmaker,
        run.id,
        runs.CHUNK_SIZE,
        request.app.state.settings.tier_run_workers,
    )
    return TierRunRead.model_validate({**run.__dict__, "policy_key": policy.key if policy else None})


@runs_router.get(
    "",
    summary="List tier runs",
    response_model=Page[TierRunRead],
    dependencies=[require_scope(Scope.POLICIES_READ)],
    responses=problem_responses(422),
)
async def list_tier_runs(
    session: SessionDep,
    page: PageParams,
    status_: Annotated[TierRunStatus | None, Query(alias="status", description="Only runs in this state.")] = None,
) -> Page[TierRunRead]:
    """Tier runs, newest first (the cron's, activations' and yours); follow `next_cursor` for older ones."""
    rows = await runs.list_runs(session, page, status_)
    return Page[TierRunRead].of(
        rows,
        page,
        lambda row: TierRunRead.model_validate({**row[0].__dict__, "policy_key": row[1]}),
        key_of=lambda row: (row[0].id,),
    )


@runs_router.get(
    "/{run_id}",
    summary="Get a tier run's progress",
    response_model=TierRunRead,
    dependencies=[require_scope(Scope.POLICIES_READ)],
    responses=problem_responses(404),
)
async def get_tier_run(
    run_id: Annotated[ParamInteger(1, 2**62), Path(examples=[17])], session: SessionDep
) -> TierRunRead:
    """A run's status and progress: processed of total customers, upgrades and downgrades so far."""
    run, key = await runs.get_run(session, run_id)
    return TierRunRead.model_validate({**run.__dict__, "policy_key": key})
