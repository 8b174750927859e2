"""Operational endpoints: liveness, readiness and Prometheus metrics (unauthenticated, outside /v1)."""

from typing import Literal

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from app.core.errors import problem, problem_responses
from app.core.migrations import head_revision

router = APIRouter(tags=["operations"])


class Health(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"status": "ok"}]})

    status: Literal["ok"]


class Readiness(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"status": "ready", "database": "ok", "migration": "0042_2026_11_30_offer_state"}]
        }
    )

    status: Literal["ready"]
    database: Literal["ok"]
    migration: str | None = Field(description="The database's migration revision (the latest).")


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
    """Ready when the database answers and its schema is at the latest migration."""
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
    return Readiness(status="ready", database="ok", migration=current)


@router.get(
    "/metrics", summary="Prometheus metrics", response_class=Response, responses={200: {"content": {"text/plain": {}}}}
)
async def metrics() -> Response:
    """Prometheus metrics: requests by route template, status and latency; connection pool use."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


class PoolCollector:
    """Reports the engine's connection pool on every scrape."""

    def __init__(self) -> None:
        self.engine = None

    def collect(self):
        pool = getattr(self.engine, "pool", None)
        checked_out = GaugeMetricFamily("tierwise_db_pool_checked_out", "Connections in use")
        size = GaugeMetricFamily("tierwise_db_pool_size", "Configured pool size")
        overflow = GaugeMetricFamily("tierwise_db_pool_overflow", "Connections beyond the pool size")
        if pool is not None and hasattr(pool, "checkedout"):
            checked_out.add_metric([], pool.checkedout())
            size.add_metric([], pool.size())
            overflow.add_metric([], max(pool.overflow(), 0))
        yield from (checked_out, size, overflow)


POOL_COLLECTOR = PoolCollector()
REGISTRY.register(POOL_COLLECTOR)
