"""SQL against a scratch database for the migration tests: statements run in one transaction on an engine of its own."""

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def run_sql(url: str, statements: list[str], params: list[dict] | None = None) -> list:
    """Run the statements in order in one transaction; each one's rows (or None when it returns none)."""
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            results = []
            for sql, values in zip(statements, params or [{}] * len(statements), strict=True):
                result = await connection.execute(text(sql), values)
                results.append(result.all() if result.returns_rows else None)
            return results
    finally:
        await engine.dispose()


def upgraded_with_rows(url: str, before: str, seed: list[str], after: str):
    """Migrate the database to `before`, run the seed statements, then migrate to `after`; the Alembic config."""
    from alembic import command

    from app.core.migrations import alembic_config

    config = alembic_config(url)
    command.upgrade(config, before)
    asyncio.run(run_sql(url, seed))
    command.upgrade(config, after)
    return config


def table_counts(url: str, tables) -> dict[str, int]:
    """The row count of each table."""
    tables = list(tables)
    rows = asyncio.run(run_sql(url, [f"SELECT count(*) FROM {table}" for table in tables]))
    return {table: result[0][0] for table, result in zip(tables, rows, strict=True)}


KEY_COLUMNS = """
SELECT string_agg(a.attname, ',' ORDER BY k.n) FROM pg_constraint c
CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)
JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum
WHERE c.conrelid = CAST(:table AS regclass) AND c.conname = :name
"""


def key_columns(url: str, names: list[tuple[str, str]]) -> list[str | None]:
    """The columns of each (table, constraint name), comma-separated in the constraint's order (None: no such)."""
    rows = asyncio.run(run_sql(url, [KEY_COLUMNS] * len(names), [{"table": t, "name": n} for t, n in names]))
    return [result[0][0] for result in rows]
