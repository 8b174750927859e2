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


def table_counts(url: str, tables) -> dict[str, int]:
    """The row count of each table."""
    tables = list(tables)
    rows = asyncio.run(run_sql(url, [f"SELECT count(*) FROM {table}" for table in tables]))
    return {table: result[0][0] for table, result in zip(tables, rows, strict=True)}
