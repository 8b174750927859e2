"""Connections opened and warmed at startup (app.core.db.warm_pool): they wait in the pool, the import's statement
prepared on each, and the warm-up leaves nothing behind; a warm-up that fails keeps the service starting."""

from sqlalchemy import text

from app.core.db import create_engine, warm_pool
from app.customers import customer_import

_STATE = text(
    "SELECT (SELECT count(*) FROM customer), (SELECT count(*) FROM customer_external_id), "
    "(SELECT count(*) FROM retier_mark_set), "
    "(SELECT last_value FROM customer_id_seq), (SELECT is_called FROM customer_id_seq)"
)


async def test_warmed_connections_wait_in_the_pool_with_the_import_prepared(database_url, test_settings):
    engine = create_engine(database_url, test_settings.model_copy(update={"db_pool_size": 3, "db_max_overflow": 0}))
    try:
        async with engine.connect() as conn:
            before = (await conn.execute(_STATE)).one()
        await engine.dispose()  # none open: the warm-up opens its own
        assert await warm_pool(engine, 3, [customer_import.warm_up]) == 3
        assert engine.pool.checkedin() == 3
        held = [await engine.connect() for _ in range(3)]  # the three warmed ones, not new connections
        try:
            for conn in held:
                prepared = (await conn.execute(text("SELECT statement FROM pg_prepared_statements"))).scalars()
                assert any("INSERT INTO customer_external_id" in statement for statement in prepared)
            assert (await held[0].execute(_STATE)).one() == before  # no row written, no id drawn
        finally:
            for conn in held:
                await conn.close()
        assert engine.pool.checkedin() == 3
    finally:
        await engine.dispose()


async def test_a_warm_up_that_fails_is_skipped(database_url, test_settings):
    async def broken(conn):
        await conn.execute(text("SELECT * FROM no_such_table"))

    engine = create_engine(database_url, test_settings)
    try:
        assert await warm_pool(engine, 2, [broken]) == 0
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT 1"))).scalar() == 1
    finally:
        await engine.dispose()


async def test_both_merge_statements_of_the_import_are_prepared_by_the_warm_up(database_url, test_settings):
    """The import's plain-insert merge and the claim it falls back to (app.customers.customer_import): a race that
    needs the fallback does not pay its preparation either."""
    engine = create_engine(database_url, test_settings.model_copy(update={"db_pool_size": 1, "db_max_overflow": 0}))
    try:
        assert await warm_pool(engine, 1, [customer_import.warm_up]) == 1
        async with engine.connect() as conn:
            prepared = (await conn.execute(text("SELECT statement FROM pg_prepared_statements"))).scalars().all()
        merges = [statement for statement in prepared if "INSERT INTO customer_external_id" in statement]
        assert len(merges) == 2
        assert sum("ON CONFLICT (external_id)" in statement for statement in merges) == 1
    finally:
        await engine.dispose()
