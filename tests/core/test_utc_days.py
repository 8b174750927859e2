"""Every connection the service opens reads days in UTC whatever the server's TimeZone (app.core.db
server_settings): SQL's current_date is the UTC day that stored days (`AT TIME ZONE 'UTC'`) and Python's side use;
and the checks of days sent in (birth dates, balances' as_of) are against the UTC day whatever the process' zone."""

import time
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from pydantic import ValidationError
from sqlalchemy import make_url, text

from app.core.db import create_engine, create_read_pool
from app.customers.customer_import import _bounds
from app.customers.schemas import CustomerUpsert, HoldingIn
from tests.factories import customer_body

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


@pytest.fixture(params=["Pacific/Kiritimati", "Pacific/Pago_Pago"])
def process_zone(request, monkeypatch):
    """The process' local zone set to UTC+14 or UTC-11 (at any moment one of them is on another day than UTC)."""
    monkeypatch.setenv("TZ", request.param)
    time.tzset()
    yield request.param
    monkeypatch.undo()
    time.tzset()


def test_a_process_in_another_zone_still_checks_days_against_the_utc_day(process_zone):
    today = datetime.now(UTC).date()
    assert _bounds()[0] == today.isoformat()  # the customer import's check of a line
    assert CustomerUpsert.model_validate(customer_body(birth_date=today.isoformat())).birth_date == today
    with pytest.raises(ValidationError):
        CustomerUpsert.model_validate(customer_body(birth_date=(today + timedelta(days=1)).isoformat()))
    holding = {"product_code": "savings_account", "balance": "10.00"}
    assert HoldingIn.model_validate({**holding, "as_of": (today + timedelta(days=1)).isoformat()})
    with pytest.raises(ValidationError):
        HoldingIn.model_validate({**holding, "as_of": (today + timedelta(days=2)).isoformat()})
