"""Alembic from code: the config, the head revision, and upgrade to head."""

from functools import lru_cache
from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def alembic_config(database_url: str | None = None) -> Config:
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    if database_url:
        config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


@lru_cache
def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations found"
    return head


def upgrade_to_head(database_url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(database_url), "head")


def current_revision(database_url: str) -> str | None:
    """The revision a database is at; None when it has no Tierwise schema (Alembic never ran there)."""
    import asyncpg
    from sqlalchemy.engine import make_url

    from app.core.embedded import run_blocking

    plain = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def read() -> str | None:
        connection = await asyncpg.connect(plain)
        try:
            if await connection.fetchval("SELECT to_regclass('alembic_version')") is None:
                return None
            return await connection.fetchval("SELECT version_num FROM alembic_version")
        finally:
            await connection.close()

    return run_blocking(read)
