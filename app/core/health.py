"""Operational endpoints: liveness, readiness and Prometheus metrics (unauthenticated, outside /v1)."""

from typing import Literal

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from app.core.errors import problem, problem_responses
from app.core.metrics import exposition
from app.core.migrations import head_revision

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


class ReplicaState(BaseModel):
    """A read replica as this instance last checked it (app/core/replicas.py)."""

    name: str = Field(description="host:port/database")
    in_rotation: bool = Field(description="Serving reads; false while down, lagging past the bound or promoted.")
    lag_seconds: float | None = Field(description="Replay lag at the last check (null: never reached).")
    lag_bytes: int | None = Field(description="WAL bytes not yet replayed at the last check (null: unknown).")
    replay_lsn: str | None = Field(description="The WAL position replayed, as a consistency token compares it.")
    error: str | None = Field(description="Why it is out of rotation.")


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": "ready",
                    "database": "ok",
                    "migration": "0042_2026_11_30_offer_state",
                    "replicas": [
                        {
                            "name": "replica-1.internal:5432/tierwise",
                            "in_rotation": True,
                            "lag_seconds": 0.0,
                            "lag_bytes": 0,
                            "replay_lsn": "0/3000060",
                            "error": None,
                        }
                    ],
                }
            ]
        }
    )

    status: Literal["ready"]
    database: Literal["ok"]
    migration: str | None = Field(description="The database's migration revision (the latest).")
    replicas: list[ReplicaState] = Field(
        [],
        description="The read replicas configured (TIERWISE_READ_DATABASE_URL). One out of rotation does not make "
        "the service unready: the primary serves its reads.",
    )


@router.get("/healthz", summary="Is the process alive", response_model=Health)
async def healthz() -> Health:
    """The process is alive."""
    return Health(status="ok")


@router.get(
    "/readyz",
    summary="Is the service ready (database and migrations)",
    response_model=Readiness,
    responses={
        503: {
            **problem_responses(503)[503],
            "description": "Not ready: the database is unreachable or not migrated to head",
        }
    },
)
async def readyz(request: Request):
    """Ready when the database answers and its schema is at the latest migration; says each read replica's state."""
    try:
        async with request.app.state.sessionmaker() as session:
            current = await session.scalar(text("SELECT version_num FROM alembic_version"))
    except Exception:
        return problem(
            503,
            "Not ready",
            "The database is unreachable.",
            "not-ready",
            headers={"Retry-After": "2"},
            database="unreachable",
        )
    if current != head_revision():
        return problem(
            503,
            "Not ready",
            f"Migrations are at {current}, not at head {head_revision()}.",
            "not-ready",
            headers={"Retry-After": "10"},
            database="ok",
            migration=current,
        )
    replicas = request.app.state.replicas
    return Readiness(
        status="ready", database="ok", migration=current, replicas=replicas.states() if replicas is not None else []
    )


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
async def metrics() -> Response:
    """Prometheus metrics: requests by route template, status and latency; both connection pools (use, waits,
    timeouts); recommendation lists served, feedback by outcome, tier transitions, tier-run durations, scheduled
    jobs' last success, 429s by role; webhook deliveries; read replicas (in rotation, lag, reads, fallbacks to the
    primary). With several worker processes, the sum of all of them."""
    body, media_type = exposition()
    return Response(body, media_type=media_type)
