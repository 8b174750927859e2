"""Alembic environment (async): migrates the service database or a connection handed in by the caller."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import get_settings
from app.core.embedded import resolve_database_url, run_blocking
from app.core.partitions import is_partition
from app.models import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = metadata


def include_object(obj, name, type_, reflected, compare_to):
    # Views are maintained by hand-written migrations; autogenerate compares tables only. The monthly partitions
    # are made by the migration and the scheduled job (app/core/partitions.py), not by the models.
    return not (type_ == "table" and reflected and (name in VIEWS or is_partition(name)))


VIEWS = {"customer_features"}


def do_run_migrations(connection) -> None:
    context.configure(
        connection=connection, target_metadata=target_metadata, compare_type=True, include_object=include_object
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async_migrations() -> None:
    url = config.get_main_option("sqlalchemy.url") or resolve_database_url(get_settings())
    engine = create_async_engine(url, hide_parameters=True)
    async with engine.connect() as connection:
        await connection.run_sync(do_run_migrations)
    await engine.dispose()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        do_run_migrations(connection)
        return
    run_blocking(run_async_migrations)  # also from code that already runs an event loop (tests, the CLI)


if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    run_migrations_online()
