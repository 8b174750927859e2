"""Commands that fit and evaluate models: the recommender's evaluation, the churn model, the learned ranker and
its versions. Each imports what it uses when it runs."""

import asyncio
import json
from pathlib import Path
from typing import Annotated

import typer

from app.commands.base import _fail, cli, command_session, ranker_cli
from app.core.config import get_settings
from app.core.db import create_engine, create_sessionmaker
from app.core.embedded import resolve_database_url


@cli.command("evaluate-recommender")
def evaluate_recommender(
    path: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Snapshots CSV (.csv or .csv.gz).")],
    limit_customers: Annotated[int | None, typer.Option(min=1)] = None,
    seed: Annotated[int, typer.Option(help="The learned ranker's random seed.")] = 7,
) -> None:
    """MAP@7 of the learned ranker (trained on the months before the evaluated one) and of the rule-based
    recommender on monthly holdings snapshots, beside popularity and co-holding baselines, in a scratch database of
    its own (created on the configured server, dropped afterwards)."""
    import uuid

    from app.core.embedded import create_database, drop_database
    from app.core.migrations import upgrade_to_head
    from app.recommendations.evaluation import evaluate

    settings = get_settings()
    server = resolve_database_url(settings)
    url = create_database(server, f"tierwise_eval_{uuid.uuid4().hex[:8]}")
    try:
        upgrade_to_head(url)

        async def run() -> dict:
            engine = create_engine(url, settings, batch=True)
            try:
                return await evaluate(create_sessionmaker(engine), settings, path, limit_customers, seed)
            finally:
                await engine.dispose()

        for name, value in asyncio.run(run()).items():
            typer.echo(f"{name}={value}")
    finally:
        drop_database(url)


@cli.command("evaluate-churn")
def evaluate_churn(
    horizon_months: Annotated[
        int, typer.Option(min=1, max=12, help="Months after a month-end a decline may take.")
    ] = 1,
    decline_share: Annotated[float, typer.Option(min=0.01, max=0.99, help="A fall of at least this share.")] = 0.15,
    holdout_months: Annotated[int, typer.Option(min=1, max=12, help="The last label months held out.")] = 2,
) -> None:
    """AUC of the churn model (fitted on the months before the held-out ones) and of a rule of thumb, on the last
    `holdout_months` months of the bank's history of declines in the configured database (read only)."""
    from decimal import Decimal

    from app.reports.churn import evaluate

    async def run() -> dict:
        async with command_session(get_settings()) as session:
            return await evaluate(session, horizon_months, Decimal(str(decline_share)), holdout_months)

    try:
        result = asyncio.run(run())
    except ValueError as error:
        _fail(str(error))
    for name, value in result.items():
        typer.echo(f"{name}={value}")


@cli.command("fit-churn")
def fit_churn(
    horizon_months: Annotated[int, typer.Option(min=1, max=12)] = 3,
    decline_share: Annotated[float, typer.Option(min=0.01, max=0.99)] = 0.15,
) -> None:
    """Fit a new churn model version on the bank's history of declines; the features view scores with it."""
    from decimal import Decimal

    from app.reports.churn import fit_and_store

    async def run() -> dict:
        async with command_session(get_settings()) as session:
            model = await fit_and_store(session, "cli", horizon_months, Decimal(str(decline_share)))
            return {"version": model.version, "rows": model.rows, **model.metrics} if model else {"version": None}

    typer.echo(json.dumps(asyncio.run(run()), default=str))


@cli.command("train-ranker")
def train_ranker(
    until: Annotated[
        str | None,
        typer.Option(
            help="The last month whose adds are labels, YYYY-MM (held out to calibrate and measure); default: "
            "last month."
        ),
    ] = None,
    months: Annotated[int, typer.Option(min=2, max=36, help="Month pairs to train on.")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed: the same data and seed give the same model.")] = 7,
    serve: Annotated[
        str, typer.Option(help="auto: serve it when it beats the serving version on the held-out month; always; never.")
    ] = "auto",
    chunk_customers: Annotated[int, typer.Option(min=100)] = 50_000,
    max_negatives: Annotated[int, typer.Option(min=1000, help="Rows without an add kept at most.")] = 600_000,
) -> None:
    """Train the learned ranker on the bank's history (features in SQL, LightGBM), store it as a new version and
    perhaps serve it; prints its held-out metrics."""
    from datetime import date

    if serve not in ("auto", "always", "never"):
        raise typer.BadParameter("serve must be auto, always or never")
    try:
        month = date.fromisoformat(f"{until}-01") if until else None
    except ValueError:
        raise typer.BadParameter("until must be YYYY-MM") from None
    from app.recommendations.learned.training import NotEnoughHistory

    options = {"until": month, "months": months, "seed": seed, "serve": serve}
    options |= {"chunk_customers": chunk_customers, "max_negatives": max_negatives}
    try:
        typer.echo(json.dumps(asyncio.run(train_and_register(get_settings(), **options)), default=str))
    except NotEnoughHistory as error:
        _fail(f"no model trained: {error}")


async def train_and_register(settings, **options) -> dict:
    """Train the learned ranker on the bank's history, store the version (serving it as `serve` says) and compile
    its boosters into the data folder: `tierwise train-ranker` and the demo bank."""
    from app.recommendations.learned.compiled import cache_dir
    from app.recommendations.learned.registry import retrain

    engine = create_engine(resolve_database_url(settings), settings)
    try:
        return await retrain(
            create_sessionmaker(engine), settings.primary_policy, compiled_dir=cache_dir(settings), **options
        )
    finally:
        await engine.dispose()


@ranker_cli.command("list")
def list_ranker_models() -> None:
    """Every version, newest first: version, status, trained at, label window, held-out MAP@7."""
    from app.recommendations.learned import registry

    async def run() -> list:
        async with command_session(get_settings()) as session:
            return await registry.list_models(session)

    for row in asyncio.run(run()):
        typer.echo(
            f"{row.version}\t{row.status}\t{row.trained_at:%Y-%m-%d %H:%M}\t{row.window_from:%Y-%m}.."
            f"{row.window_until:%Y-%m}\tmap7={row.metrics.get('map7')}\tseed={row.seed}"
        )


@ranker_cli.command("serve")
def serve_ranker_model(version: int) -> None:
    """Serve this version (the one serving now is retired)."""
    from app.recommendations.learned import registry

    async def run() -> int:
        async with command_session(get_settings()) as session:
            return (await registry.serve_version(session, version)).version

    typer.echo(f"serving {_registry_call(run)}")


@ranker_cli.command("rollback")
def rollback_ranker_model() -> None:
    """Serve again the version that served before the current one."""
    from app.recommendations.learned import registry

    async def run() -> int:
        async with command_session(get_settings()) as session:
            return (await registry.rollback(session)).version

    typer.echo(f"serving {_registry_call(run)}")


def _registry_call(run) -> int:
    from app.core.errors import AppError

    try:
        return asyncio.run(run())
    except AppError as error:
        typer.echo(error.detail, err=True)
        raise typer.Exit(1) from None
