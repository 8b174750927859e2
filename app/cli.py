"""The `tierwise` command: serve, migrate, demo data, API keys and the OpenAPI export.

Each command imports what it uses when it runs, so that `tierwise migrate` does not load the whole app."""

import asyncio
import json
import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Annotated

import typer
from sqlalchemy import func, select

from app.commands import learning  # noqa: F401  (registers the model commands)
from app.commands.base import _fail, cli, command_session, keys_cli, migrated_database_url  # noqa: F401
from app.core.config import Settings, get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.embedded import resolve_database_url, stop_embedded_postgres


@cli.command()
def migrate() -> None:
    """Apply every database migration (alembic upgrade head)."""
    from app.core.migrations import upgrade_to_head

    upgrade_to_head(resolve_database_url(get_settings()))
    typer.echo("database at head")


@cli.command()
def demo(
    customers: Annotated[int, typer.Option("--customers", "-n", min=1)] = 1000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same bank.")] = 7,
    ranker: Annotated[
        bool, typer.Option(help="Train the learned ranker on the bank's history and serve it (about a minute).")
    ] = True,
) -> None:
    """Generate a reproducible synthetic bank: products, customers, holdings, balances and 90 days of activity;
    then the default tier policies, activated, a tier run over everyone, and the learned ranker trained."""
    typer.echo(json.dumps(asyncio.run(_load_demo(get_settings(), customers, seed, ranker)), default=str))


async def _load_demo(settings: Settings, customers: int, seed: int, ranker: bool = True) -> dict:
    from app.demo import generate_demo_bank
    from app.recommendations.contact import load_default_contact_policy
    from app.recommendations.ranking_stats import refresh_stats
    from app.tiering.policies import load_default_policies

    async with command_session(settings) as session:
        counts = await generate_demo_bank(session, customers=customers, seed=seed)
    async with command_session(settings) as session:
        counts["policies_created"] = await load_default_policies(session)
        await load_default_contact_policy(session)
    async with command_session(settings) as session:
        from app.demo import load_demo_benefits

        counts["benefits_created"] = await load_demo_benefits(session)
    counts["tier_run"] = await _tier_run(settings, None, 50_000)
    async with command_session(settings) as session:
        from app.demo import record_demo_benefit_uses

        counts["benefit_uses"] = await record_demo_benefit_uses(session)
    async with command_session(settings) as session:
        from app.managers.demo import load_demo_managers

        counts["manager_assignment"] = await load_demo_managers(session)  # after the tier run: tiers to serve
    async with command_session(settings) as session:
        from app.reports.churn import fit_and_store

        model = await fit_and_store(session, "demo")  # the churn_risk attribute, and the worklist's churn tasks
        counts["churn_model_version"] = model.version if model is not None else None
    async with command_session(settings) as session:
        from app.managers.demo import load_demo_worklists

        counts["worklists"] = await load_demo_worklists(session)  # rules, holidays, stories for every task kind
    async with command_session(settings) as session:
        counts["stats"] = await refresh_stats(session, settings.primary_policy)
    async with command_session(settings) as session:
        from app.reports.margins import load_demo_margins

        counts["contribution_margins"] = await load_demo_margins(session)
    if ranker:  # last: it learns from the history above; the offer states pick its scores up as they refresh
        from app.commands.learning import train_and_register
        from app.recommendations.learned.training import NotEnoughHistory

        try:
            model = await train_and_register(settings, seed=seed, serve="always")
            counts["ranker_model"] = {key: model[key] for key in ("version", "serving", "map7", "compiled")}
        except NotEnoughHistory as error:  # a bank of a few customers: the rules rank, as before any model
            counts["ranker_model"] = {"version": None, "skipped": str(error)}
    return counts


@keys_cli.command("create")
def create_key(
    name: Annotated[str, typer.Option()], role: Annotated[str, typer.Option(help="app, integration or admin")] = "admin"
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    from app.apikeys import service
    from app.core.security import ROLE_SCOPES

    if role not in ROLE_SCOPES:
        raise typer.BadParameter(f"role must be one of {', '.join(ROLE_SCOPES)}")
    settings = get_settings()

    async def run() -> str:
        async with command_session(settings) as session:
            _, key = await service.create_api_key(session, name, role, settings.api_key_pepper)
            return key

    typer.echo(asyncio.run(run()))


@keys_cli.command("list")
def list_keys(include_revoked: bool = False) -> None:
    """List keys: id, name, role, lookup id, created and revoked times."""
    from app.apikeys import service

    async def run() -> list:
        async with command_session(get_settings()) as session:
            return await service.list_api_keys(session, include_revoked)

    for row in asyncio.run(run()):
        typer.echo(
            f"{row.id}\t{row.name}\t{row.role}\ttw_{row.lookup_id}_…\t{row.created_at:%Y-%m-%d}\t"
            f"{'revoked ' + format(row.revoked_at, '%Y-%m-%d') if row.revoked_at else 'active'}"
        )


@keys_cli.command("revoke")
def revoke_key(key_id: int) -> None:
    """Revoke a key by id; it stops working at once."""
    from app.apikeys import service

    async def run() -> None:
        async with command_session(get_settings()) as session:
            await service.revoke_api_key(session, key_id)

    asyncio.run(run())
    typer.echo(f"revoked {key_id}")


@cli.command("tier-run")
def tier_run(
    policy: Annotated[str | None, typer.Option(help="One policy key.")] = None,
    all_policies: Annotated[bool, typer.Option("--all", help="Every active policy.")] = False,
    chunk_size: Annotated[int, typer.Option(min=1000)] = 50_000,
) -> None:
    """Evaluate every customer's tier now (from cron): set-based, in chunks, recorded at /v1/tier-runs."""
    if (policy is None) == (not all_policies):
        raise typer.BadParameter("give either --policy KEY or --all")
    outcome = asyncio.run(_tier_run(get_settings(), policy, chunk_size))
    typer.echo(json.dumps(outcome, default=str))
    if outcome["status"] != "succeeded":
        raise typer.Exit(1)  # cron sees a failed run


async def _tier_run(settings: Settings, policy_key: str | None, chunk_size: int) -> dict:
    from app.tiering import policies, runs

    engine = create_engine(migrated_database_url(settings), settings, batch=True)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as session:
            policy = await policies.get_policy(session, policy_key) if policy_key else None
            run = await runs.start_run(session, policy, "cli")
            await session.commit()
        await runs.execute_run(sessionmaker, run.id, chunk_size, settings.tier_run_workers)
        async with sessionmaker() as session:
            run, key = await runs.get_run(session, run.id)
            return {
                "run": run.id,
                "policy": key,
                "status": run.status,
                "processed": run.processed,
                "total": run.total,
                "upgrades": run.upgrades,
                "downgrades": run.downgrades,
                "seconds": round((run.finished_at - run.started_at).total_seconds(), 2),
            }
    finally:
        await engine.dispose()


@cli.command("import-balances")
def import_balances(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="NDJSON or CSV, as the API takes.")],
    csv_format: Annotated[bool, typer.Option("--csv", help="The file is CSV (default: by its .csv suffix).")] = False,
    chunk_size: Annotated[int, typer.Option(min=100, help="Customer ids per chunk (one transaction).")] = 50_000,
    workers: Annotated[
        int | None, typer.Option(min=1, max=16, help="Chunks merged at once (default: TIERWISE_TIER_RUN_WORKERS).")
    ] = None,
) -> None:
    """Import the nightly balances file from disk: the same code path as POST /v1/holdings/import. Prints a line
    per merged chunk, then the import as JSON; run it again with the same file to resume one that stopped."""
    fmt = "csv" if csv_format or file.suffix.lower() == ".csv" else "ndjson"
    settings = get_settings()
    outcome = asyncio.run(_import_balances(settings, file, fmt, chunk_size, workers or settings.tier_run_workers))
    typer.echo(json.dumps(outcome, default=str))
    if outcome["status"] != "succeeded":
        raise typer.Exit(1)


async def _import_balances(settings: Settings, file: Path, fmt: str, chunk_size: int, workers: int = 1) -> dict:
    from app.customers import holdings_import

    async def chunks():
        with file.open("rb") as handle:
            while block := await asyncio.to_thread(handle.read, 1 << 20):
                yield block

    async def progress(record) -> None:
        typer.echo(f"chunk {record.chunks_done}: {record.customers_done}/{record.customers} customers merged", err=True)

    engine = create_engine(migrated_database_url(settings), settings, batch=True)
    sessionmaker = create_sessionmaker(engine)
    try:
        staged = await holdings_import.stage(sessionmaker, chunks(), fmt, "cli")
        if not staged.created:
            typer.echo(f"import {staged.import_id}: this file was imported before; resuming it if unfinished", err=True)
        await holdings_import.merge(
            sessionmaker, staged.import_id, chunk_size=chunk_size, workers=workers, on_chunk=progress
        )
        async with sessionmaker() as session:
            record, rejections = await holdings_import.get_import(session, staged.import_id)
            return {
                "import": record.id,
                "status": record.status,
                "lines": record.lines,
                "accepted": record.accepted,
                "rejected": record.rejected,
                "customers": record.customers,
                "customers_done": record.customers_done,
                "rejections": rejections[:20],
            }
    finally:
        await engine.dispose()


@cli.command("refresh-offer-states")
def refresh_offer_states(
    everyone: Annotated[
        bool, typer.Option("--everyone", help="Every customer, not only those who have asked for recommendations.")
    ] = False,
) -> None:
    """Compute again the customers' offer states that no longer hold (set-based SQL; also runs on a schedule)."""
    from app.recommendations.recommender import Recommender

    settings = get_settings()

    async def run() -> dict:
        engine = create_engine(migrated_database_url(settings), settings, batch=True)
        try:
            return await Recommender(settings, create_sessionmaker(engine)).refresh_offer_states(everyone=everyone)
        finally:
            await engine.dispose()

    typer.echo(json.dumps(asyncio.run(run())))


@cli.command("refresh-stats")
def refresh_stats() -> None:
    """Recompute product popularity and co-holding statistics (set-based SQL; also runs on a schedule)."""
    from app.recommendations import ranking_stats

    settings = get_settings()

    async def run() -> dict:
        async with command_session(settings) as session:
            return await ranking_stats.refresh_stats(session, settings.primary_policy)

    typer.echo(json.dumps(asyncio.run(run())))


@cli.command()
def openapi(output: Annotated[Path | None, typer.Option(help="File to write; stdout when omitted.")] = None) -> None:
    """Export the OpenAPI document of the app."""
    from app.main import create_app

    document = json.dumps(create_app(Settings(environment="test")).openapi(), indent=2, sort_keys=True) + "\n"
    if output:
        output.write_text(document)
    else:
        typer.echo(document, nl=False)


async def _prepare(settings: Settings, demo_customers: int) -> str:
    """Demo data when the database is empty, and the admin key `make run` prints (kept in the data folder)."""
    from app.apikeys import service
    from app.customers.models import Customer

    key_file = settings.data_dir / "admin-key"
    async with command_session(settings) as session:
        empty = not await session.scalar(select(func.count()).select_from(Customer))
    if empty:
        typer.echo(f"loading demo data: {demo_customers} customers, default tier policies, a tier run, the ranker ...")
        await _load_demo(settings, demo_customers, seed=7)
    async with command_session(settings) as session:
        if key_file.exists():
            key = key_file.read_text().strip()
            if await service.resolve_principal(session, key, settings.api_key_pepper):
                return key
        _, key = await service.create_api_key(session, "make-run-admin", "admin", settings.api_key_pepper)
    key_file.parent.mkdir(parents=True, exist_ok=True)
    key_file.write_text(key + "\n")
    os.chmod(key_file, 0o600)
    return key


@cli.command()
def serve(
    setup: Annotated[bool, typer.Option(help="Migrate, load demo data if empty, print an admin key.")] = False,
    demo_customers: int = 2000,
    host: str | None = None,
    port: int | None = None,
    workers: Annotated[
        int, typer.Option(min=1, help="Worker processes (uvicorn's); scheduled jobs run in one of them.")
    ] = 1,
) -> None:
    """Serve the API (Swagger at /docs)."""
    import uvicorn

    from app.core.logging import configure_logging

    settings = get_settings()
    host, port = host or settings.host, port or settings.port
    if settings.database_url is None:
        # This process starts the embedded Postgres, holds it, and stops it on every way out; the workers are told
        # its URL, so they connect to it and never start (or stop) one of their own.
        from sqlalchemy.engine import make_url

        embedded = make_url(resolve_database_url(settings)).set(drivername="postgresql")
        os.environ["TIERWISE_DATABASE_URL"] = embedded.render_as_string(hide_password=False)
    if setup:
        from app.core.migrations import upgrade_to_head

        upgrade_to_head(resolve_database_url(settings))
        key = asyncio.run(_prepare(settings, demo_customers))
        typer.echo(f"\nTierwise is starting on http://{host}:{port}  (Swagger: http://{host}:{port}/docs)")
        typer.echo(f"Admin API key (Authorize in Swagger, or X-API-Key header): {key}\n")
    configure_logging(settings.log_level)
    metrics_dir = None
    if workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        # Several processes: each counts into files here and /metrics sums them (app/core/metrics.py). A fresh
        # directory per start (figures from a previous run must not count), removed on the way out.
        metrics_dir = tempfile.mkdtemp(prefix="tierwise-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    try:
        # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from any local peer; the app reads it
        # only from TIERWISE_TRUSTED_PROXIES (app.core.ratelimit.client_address).
        uvicorn.run(
            "app.main:create_production_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=20,
            proxy_headers=False,
            http="app.core.server:ProblemHttpProtocol",
        )
    finally:
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


class Terminated(BaseException):
    """SIGTERM (docker, systemd, Kubernetes), raised where the process is so that it unwinds and stops the
    embedded Postgres; uvicorn holds the signal while it shuts down gracefully, then raises it again."""


def _terminate(signum, frame) -> None:
    raise Terminated


def main() -> None:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli()
    except Terminated:
        stop_embedded_postgres()
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)  # end as the signal ends a process, which supervisors read as clean
    finally:
        stop_embedded_postgres()  # Ctrl-C, a normal exit, a failure at start-up


if __name__ == "__main__":
    main()
