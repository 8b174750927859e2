"""The application factory: routers, middleware, error handlers and the database lifespan."""

import asyncio
import gc
from contextlib import asynccontextmanager
from functools import partial

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool

from app.apikeys.router import router as apikeys_router
from app.apikeys.service import PrincipalCache, resolve_principal
from app.audit.router import router as audit_router
from app.benefits.router import HOT_READS as BENEFIT_HOT_READS
from app.benefits.router import customer_router as benefits_customer_router
from app.benefits.router import reports_router as benefits_reports_router
from app.benefits.router import router as benefits_router
from app.core import idempotency
from app.core.config import Settings, get_settings
from app.core.db import (
    close_replicas,
    create_engine,
    create_read_pool,
    create_sessionmaker,
    open_replicas,
    read_connection,
    warm_pool,
)
from app.core.docs import install_docs
from app.core.embedded import resolve_database_url
from app.core.errors import install_error_handlers
from app.core.etag import GZipWithCodedETags
from app.core.health import router as health_router
from app.core.hotpath import HotReads
from app.core.invalidation import API_KEYS, RANKING_STATS, InvalidationListener
from app.core.leader import Leadership, database_dsn
from app.core.logging import configure_logging
from app.core.metrics import process_exited
from app.core.middleware import BodySizeLimitMiddleware, RequestContextMiddleware
from app.core.openapi import TAGS, install_openapi, operation_id
from app.core.partitions import run_partition_maintenance
from app.core.ratelimit import FailedAuthLimiter, RateLimit, role_limits
from app.core.replica_retry import ReplicaRetry
from app.core.schedule import run_every
from app.core.security import role_scopes
from app.core.shared_ratelimit import rate_limiter
from app.customers import customer_import
from app.customers.imports_router import imports_router as holdings_imports_router
from app.customers.retier import RetierWorker
from app.customers.router import events_router
from app.customers.router import router as customers_router
from app.engagement.activities_router import router as activities_router
from app.engagement.referrals_router import router as referrals_router
from app.engagement.router import router as communities_router
from app.feedback.router import router as feedback_router
from app.managers.router import router as managers_router
from app.managers.rules_router import router as worklist_rules_router
from app.products.quota_router import router as quota_router
from app.products.quota_router import usage_router as quota_usage_router
from app.products.router import router as products_router
from app.recommendations.learned.router import router as ranker_models_router
from app.recommendations.learned.scheduled import retrain_ranker
from app.recommendations.recommender import Recommender
from app.recommendations.router import HOT_READS as RECOMMENDATION_HOT_READS
from app.recommendations.router import contact_router, fallback_router
from app.recommendations.router import router as recommendations_router
from app.reports.router import margins_router
from app.reports.router import router as reports_router
from app.reports.scheduled import refit_churn_model
from app.rules.router import custom_attributes_router
from app.rules.router import router as rules_router
from app.tiering.assignment.router import HOT_READS as TIER_HOT_READS
from app.tiering.assignment.router import bulk_tiers_router, care_router, customer_tiers_router, transitions_router
from app.tiering.policies_router import router as policies_router
from app.tiering.runs_router import runs_router
from app.webhooks import service as webhooks_service
from app.webhooks.delivery import DeliveryWorker
from app.webhooks.router import router as webhooks_router
from app.webhooks.signing import __doc__ as SIGNATURE_SCHEME

DESCRIPTION = """
Customer tiering and next-best-product recommendations for retail and mobile banking.

Authenticate with an API key in the `X-API-Key` header (the **Authorize** button). Roles:
**app** (mobile backend: one customer's profile, tiers and recommendations; write feedback),
**integration** (write customers, holdings and events; follow the tier change feed) and **admin** (everything,
including lists of customers, complaints and survey answers, and erasure).
Every error is an RFC 9457 `application/problem+json` document.

Values are read as written, never coerced: dates (`YYYY-MM-DD`) and times (ISO 8601 with a timezone) are text
within the years 1900..2100; booleans are `true` or `false`; integers are JSON integers (digits in a path or
query), within their column; amounts are JSON numbers or decimal strings (`"1250.50"`) that fit NUMERIC(18, 2).
"""

ROUTERS = [
    customers_router,
    events_router,
    rules_router,
    custom_attributes_router,
    products_router,
    quota_router,
    quota_usage_router,
    apikeys_router,
    policies_router,
    customer_tiers_router,
    transitions_router,
    runs_router,
    care_router,
    recommendations_router,
    contact_router,
    fallback_router,
    audit_router,
    feedback_router,
    reports_router,
    margins_router,
    webhooks_router,
    holdings_imports_router,
    bulk_tiers_router,
    benefits_router,
    benefits_customer_router,
    benefits_reports_router,
    communities_router,
    activities_router,
    referrals_router,
    managers_router,
    worklist_rules_router,
    ranker_models_router,
]
HOT_READS = [*TIER_HOT_READS, *RECOMMENDATION_HOT_READS, *BENEFIT_HOT_READS]


WEBHOOKS_TAG = {
    "name": "webhooks",
    "description": "Be told instead of polling: subscribe a URL to event types; "
    "each event is POSTed to it, signed.\n\n" + SIGNATURE_SCHEME,
}


def create_app(settings: Settings | None = None, *, sessionmaker=None) -> FastAPI:
    """Build the app. Tests pass a sessionmaker bound to their own connection; otherwise the lifespan opens
    the one engine (and the embedded Postgres when no database URL is configured)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if sessionmaker is not None:
            app.state.sessionmaker = sessionmaker
            yield
            return
        database_url = resolve_database_url(settings)
        engine = create_engine(database_url, settings)
        app.state.engine = engine
        app.state.sessionmaker = create_sessionmaker(engine)
        await warm_pool(engine, settings.db_pool_warm, [customer_import.warm_up])
        # FastAPI enters a request's generator dependencies (its session) in an anyio cancel scope, and anyio imports
        # its asyncio backend at its first use: some 10 ms (more on a busy machine) of the first request after a
        # start, on the event loop that serves the others too (bench/RESULTS.md, import23). Imported here instead,
        # through FastAPI's own use of anyio.
        await run_in_threadpool(int)
        app.state.read_pool = await create_read_pool(engine, settings) if settings.hot_reads else None
        app.state.replicas = await open_replicas(settings, database_url)
        recommender = app.state.recommender
        schedule = [
            (settings.stats_refresh_minutes, recommender.refresh_statistics, "recommendation statistics refreshed"),
            (settings.offer_states_refresh_minutes, recommender.refresh_offer_states, "offer states refreshed"),
            (
                settings.ranker_retrain_hours * 60,
                partial(retrain_ranker, app.state.sessionmaker, settings),
                "ranker retrained",
            ),
            (
                settings.churn_refit_hours * 60,
                partial(refit_churn_model, app.state.sessionmaker),
                "churn model refitted",
            ),
        ]
        schedule.append(
            (
                settings.purge_minutes,
                lambda: purge(app.state.sessionmaker, settings),
                "expired idempotency keys and delivered webhooks purged",
            )
        )
        schedule.append(
            (
                settings.partition_maintenance_minutes,
                partial(run_partition_maintenance, app.state.sessionmaker, settings),
                "partitions maintained",
            )
        )
        # one process leads the scheduled jobs (app.core.leader); every one drops its caches on a NOTIFY
        app.state.leader = Leadership(database_dsn(database_url), settings.leader_interval_seconds)
        app.state.invalidation = InvalidationListener(
            database_dsn(database_url),
            {API_KEYS: app.state.principal_cache.clear, RANKING_STATS: recommender.invalidate_stats},
        )
        jobs = [asyncio.create_task(app.state.leader.run()), asyncio.create_task(app.state.invalidation.run())]
        jobs += [
            asyncio.create_task(run_every(minutes, job, done, app.state.leader))
            for minutes, job, done in schedule
            if minutes
        ]
        if settings.webhook_worker:
            jobs.append(asyncio.create_task(DeliveryWorker(settings, app.state.sessionmaker).run()))
        if settings.retier_worker:
            jobs.append(asyncio.create_task(RetierWorker(settings, app.state.sessionmaker).run()))
        if app.state.replicas is not None:
            jobs.append(asyncio.create_task(app.state.replicas.run()))
        # What is loaded by now (modules, the app, its routes and schemas: some 200,000 objects) lives as long as the
        # process: moved out of the collector's generations, so that a request allocating many objects (an import's
        # 5,000 lines) no longer pays full collections that walk all of it (bench/RESULTS.md, import20e).
        gc.freeze()
        try:
            yield
        finally:
            for job in jobs:
                job.cancel()
            await asyncio.gather(*jobs, return_exceptions=True)  # the webhook worker lets sends in flight finish
            await app.state.rate_limiter.close()
            if app.state.read_pool is not None:
                await app.state.read_pool.close()
            await close_replicas(app.state.replicas)
            await engine.dispose()
            process_exited()

    app = FastAPI(
        title="Tierwise",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        openapi_tags=[*TAGS, WEBHOOKS_TAG],
        generate_unique_id_function=operation_id,
        docs_url=None,
        redoc_url=None,
        # The service's own request ids, W3C trace context and Prometheus metrics (app/core/middleware.py) say
        # what it does; FastAPI's OpenTelemetry hooks, off, cost no look-up of the providers on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.settings = settings
    app.state.rate_limiter = rate_limiter(role_limits(settings), settings)
    app.state.failed_auth = FailedAuthLimiter(RateLimit(settings.auth_failures_per_s, settings.auth_failures_burst))
    app.state.role_scopes = role_scopes(settings.role_grants)
    app.state.principal_cache = PrincipalCache(settings.api_key_cache_seconds)
    # core.security authorizes with the api-keys domain's resolver, given here so that the core imports no domain
    app.state.resolve_principal = partial(
        resolve_principal,
        pepper=settings.api_key_pepper,
        cache=app.state.principal_cache,
        role_scopes=app.state.role_scopes,
    )
    app.state.recommender = Recommender(settings, lambda: app.state.sessionmaker(), lambda: read_connection(app.state))
    app.state.read_pool = (
        None  # opened by the lifespan with the engine; without one, hot reads use the bound connection
    )
    app.state.replicas = None  # the read replicas (app/core/replicas.py), opened by the lifespan when configured
    if sessionmaker is not None:
        app.state.sessionmaker = sessionmaker
    install_error_handlers(app)
    app.include_router(health_router)
    install_docs(app)
    for router in ROUTERS:
        app.include_router(router)
    install_openapi(app)
    # Middleware, innermost first: gzip for the router's large answers (lists, reports; a strong ETag becomes the
    # gzip representation's own), a routed read run again on the primary when its replica failed under it, the
    # body size limit (not for a GET), the hot reads in front of those (GETs with small documents, which retry on
    # the primary themselves), and outermost the request id, access log, metrics and the answer to unexpected
    # errors (they see every request and its status).
    app.add_middleware(GZipWithCodedETags, minimum_size=GZIP_MINIMUM_BYTES, compresslevel=GZIP_LEVEL)
    app.add_middleware(ReplicaRetry)
    app.add_middleware(
        BodySizeLimitMiddleware,
        max_bytes=settings.max_body_bytes,
        large_paths={
            "/v1/customers/import": settings.max_import_body_bytes,
            "/v1/events": settings.max_import_body_bytes,
        },
    )
    if settings.hot_reads:
        app.add_middleware(HotReads, reads=HOT_READS, routes=_routes_of(HOT_READS))
    app.add_middleware(RequestContextMiddleware)
    return app


GZIP_MINIMUM_BYTES = 4096  # below this, compressing saves less than it costs (a page of a list is well above)
GZIP_LEVEL = 5  # most of level 9's saving on JSON, at a fraction of its CPU


async def purge(sessionmaker, settings: Settings) -> dict:
    """The scheduled purge: expired Idempotency-Keys, and webhook deliveries past their retention."""
    async with sessionmaker() as session, session.begin():
        return {**await idempotency.purge_expired(session), **await webhooks_service.purge_delivered(session, settings)}


def _routes_of(reads) -> dict:
    """The FastAPI route of each hot read (it must exist: Swagger documents the hot read through it)."""
    paths = {read.path for read in reads}
    routes = {
        route.path: route
        for router in ROUTERS
        for route in router.routes
        if route.path in paths and "GET" in route.methods
    }
    missing = paths - routes.keys()
    if missing:
        raise RuntimeError(f"hot reads without a route: {sorted(missing)}")
    return routes


def create_production_app() -> FastAPI:
    """Entry point for uvicorn --factory."""
    settings = get_settings()
    configure_logging(settings.log_level)
    return create_app(settings)
