"""The schema the models describe is the one the migrations build; the exported OpenAPI is the app's."""

import asyncio
import json
from pathlib import Path

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.config import Settings
from app.core.migrations import alembic_config, upgrade_to_head
from app.core.partitions import is_partition
from app.main import create_app
from app.models import metadata

ROOT = Path(__file__).resolve().parents[1]


async def test_models_and_migrations_do_not_differ(engine):
    def diff(sync_connection):
        def include_name(name, type_, parent_names):  # the monthly partitions are not models (app/core/partitions.py)
            return not (type_ == "table" and is_partition(name))

        context = MigrationContext.configure(sync_connection, opts={"compare_type": True, "include_name": include_name})
        return compare_metadata(context, metadata)

    async with engine.connect() as connection:
        differences = await connection.run_sync(diff)
    assert differences == [], f"models and migrations differ; add a migration: {differences}"


def test_downgrade_to_empty_and_upgrade_again(scratch_database):
    url = scratch_database()

    async def scalar(sql: str):
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                return await connection.scalar(text(sql))
        finally:
            await engine.dispose()

    upgrade_to_head(url)
    command.downgrade(alembic_config(url), "base")
    assert (
        asyncio.run(
            scalar(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public' "
                "AND table_name <> 'alembic_version'"
            )
        )
        == 0
    )
    upgrade_to_head(url)
    assert asyncio.run(scalar("SELECT count(*) FROM customer_features")) == 0


def test_exported_openapi_matches_the_app():
    exported = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    current = create_app(Settings(environment="test")).openapi()
    assert exported == json.loads(json.dumps(current)), "openapi/openapi.json is stale: run `make openapi`"


def test_every_request_body_has_an_example():
    spec = create_app(Settings(environment="test")).openapi()
    schemas = spec["components"]["schemas"]
    missing = []
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody")
            if not body:
                continue
            for media in body["content"].values():
                ref = media.get("schema", {}).get("$ref", "")
                schema = schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else media.get("schema", {})
                if not (media.get("example") or media.get("examples") or schema.get("examples")):
                    missing.append(f"{method.upper()} {path}")
    assert missing == []
