"""The `tierwise` command groups, and the database and session a command works on."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
from app.core.db import create_engine, create_sessionmaker

cli = typer.Typer(help="Tierwise: customer tiering and next-best-product service.", no_args_is_help=True)
keys_cli = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
cli.add_typer(keys_cli, name="api-keys")
ranker_cli = typer.Typer(help="List the learned ranker's model versions, serve one, roll back.", no_args_is_help=True)
cli.add_typer(ranker_cli, name="ranker-models")


def migrated_database_url(settings: Settings) -> str:
    """The database a command works on, which `tierwise migrate` prepared. When it is not there, say which
    database was tried and what to do, and exit 1 (creating nothing: no data folder, no empty database)."""
    from sqlalchemy.engine import make_url

    from app.core.embedded import database_exists, has_embedded_postgres, start_embedded_postgres, to_async_url
    from app.core.migrations import current_revision

    where = "set TIERWISE_DATA_DIR or TIERWISE_DATABASE_URL to the database you meant"
    if settings.database_url is None and not has_embedded_postgres(settings.data_dir):
        _fail(
            f"no Tierwise database in the data folder {settings.data_dir.resolve()}: run `tierwise migrate` "
            f"to create one there, or {where}"
        )
    url = settings.database_url or start_embedded_postgres(settings.data_dir)
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        migrated = database_exists(url) and current_revision(url) is not None
    except (OSError, ValueError) as exc:  # refused, unreachable, no such host
        _fail(f"cannot reach {shown} ({type(exc).__name__}): is the server running? Or {where}")
    except Exception as exc:  # the server answered with an error: authentication, permissions
        if type(exc).__module__.split(".")[0] != "asyncpg":
            raise
        _fail(f"{shown} refused the connection ({type(exc).__name__}): check the URL's user and password")
    if not migrated:
        _fail(f"no Tierwise schema in {shown}: run `tierwise migrate`, or {where}")
    return to_async_url(url)


def _fail(message: str) -> None:
    typer.echo(f"tierwise: {message}", err=True)
    raise typer.Exit(1)


@asynccontextmanager
async def command_session(settings: Settings) -> AsyncIterator[AsyncSession]:
    """A session for one CLI command: committed when the command succeeds, like a request."""
    engine = create_engine(migrated_database_url(settings), settings, batch=True)
    try:
        async with create_sessionmaker(engine)() as session:
            yield session
            await session.commit()
    finally:
        await engine.dispose()
