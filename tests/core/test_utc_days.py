"""Every connection the service opens reads days in UTC whatever the server's TimeZone (app.core.db
server_settings): SQL's current_date is the UTC day that stored days (`AT TIME ZONE 'UTC'`) and Python's side use."""

import asyncpg
import pytest
from sqlalchemy import make_url, text

from app.core.db import create_engine, create_read_pool

UTC_DAY = "SELECT current_setting('TimeZone'), current_date = (now() AT TIME ZONE 'UTC')::date"


@pytest.mark.parametrize("zone", ["Pacific/Kiritimati", "Pacific/Pago_Pago"])
async def test_a_server_in_another_zone_still_gives_the_service_utc_days(scratch_database, test_settings, zone):
    # UTC+14 and UTC-11: at any moment one of the two is on another day than UTC, so one case always tells
    url = scratch_database()
    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f"ALTER DATABASE \"{make_url(url).database}\" SET timezone = '{zone}'")
        assert await admin.fetchval("SELECT current_setting('TimeZone')") != "UTC"  # a default, read when connecting
    finally:
        await admin.close()
    plain = await asyncpg.connect(dsn)
    try:
        assert await plain.fetchval("SELECT current_setting('TimeZone')") == zone  # what a connection gets by default
    finally:
        await plain.close()
    engine = create_engine(url, test_settings)
    try:
        async with engine.connect() as conn:
            assert tuple((await conn.execute(text(UTC_DAY))).one()) == ("UTC", True)
        pool = await create_read_pool(engine, test_settings)
        try:
            connection = await pool.acquire()
            try:
                assert tuple(await connection.fetchrow(UTC_DAY)) == ("UTC", True)
            finally:
                pool.release(connection)
        finally:
            await pool.close()
    finally:
        await engine.dispose()
