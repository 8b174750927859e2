"""No 5xx for any input, and a 503 for a database that is away however the error arrives: real driver errors,
wrapped by SQLAlchemy or raised bare by the hot reads, are classified in one place (app.core.errors)."""

import asyncio
import logging

import asyncpg
import httpx
import pytest
from sqlalchemy import text
from starlette.requests import Request

from app.core.db import create_engine, create_sessionmaker
from app.core.embedded import create_database
from app.core.errors import MAX_BODY_DEPTH, handle_unexpected
from app.core.logging import JsonFormatter
from app.core.migrations import upgrade_to_head
from app.main import create_app
from tests.factories import add_products, customer_body
from tests.hardening.live_server import _make_keys, plain_url

VALUE = "Zelda Quuxington"


def _request() -> Request:
    return Request({"type": "http", "method": "GET", "path": "/probe", "headers": [], "query_string": b""})


@pytest.mark.parametrize("report", ["tier-migrations", "recommendation-funnel", "satisfaction"])
@pytest.mark.parametrize(
    ("bounds", "refused"),
    [
        ({"to": "9999-12-31"}, "to"),
        ({"to": "0001-01-01"}, "to"),
        ({"from": "0001-01-01"}, "from"),
        ({"from": "2026-01-01T00:00:00Z", "to": "9999-12-31T23:59:59Z"}, "to"),
    ],
)
async def test_reports_refuse_dates_beyond_the_years_a_bank_means_with_422(client, as_role, report, bounds, refused):
    response = await client.get(
        f"/v1/reports/{report}", params={"policy_key": "wealth", **bounds}, headers=as_role("admin")
    )
    assert response.status_code == 422, response.text
    assert [e["parameter"] for e in response.json()["errors"]] == [refused]


async def test_reports_take_the_last_day_of_the_bounds(client, as_role):
    response = await client.get(
        "/v1/reports/recommendation-funnel", params={"from": "1900-01-01", "to": "2100-12-31"}, headers=as_role("admin")
    )
    assert response.status_code == 200, response.text
    assert response.json()["to"].startswith("2101-01-01")


@pytest.mark.parametrize("path", ["hot", "routed"])
async def test_a_nul_character_in_excluded_products_is_a_422_on_both_paths(client, routed, as_role, session, path):
    await add_products(session)
    await session.commit()
    http = client if path == "hot" else routed
    assert (await http.put("/v1/customers/NX-1", json=customer_body(), headers=as_role("admin"))).status_code == 201
    response = await http.get("/v1/customers/NX-1/recommendations?exclude=%00", headers=as_role("app"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["parameter"] == "exclude/0"


async def _real_errors(server_url: str) -> dict[str, BaseException]:
    """Errors as the driver raises them, on a real server: a NUL in text, an integer beyond bigint (refused by the
    driver itself), a session an administrator terminated, a duplicate key whose DETAIL quotes the value (a 409:
    another request took the key first), and a statement on a table that does not exist (a bug: a 500)."""
    errors: dict[str, BaseException] = {}
    connection = await asyncpg.connect(server_url)
    victim = await asyncpg.connect(server_url)
    try:
        for name, statement, args in [
            ("nul", "SELECT $1::text", ["a\x00b"]),
            ("bigint", "SELECT $1::int8", [2**70]),
            ("bug", "SELECT * FROM no_such_table", []),
        ]:
            try:
                await connection.fetch(statement, *args)
            except Exception as exc:  # noqa: BLE001
                errors[name] = exc
        await connection.execute("CREATE TEMP TABLE person (name text UNIQUE)")
        await connection.execute("INSERT INTO person VALUES ($1)", VALUE)
        try:
            await connection.execute("INSERT INTO person VALUES ($1)", VALUE)
        except Exception as exc:  # noqa: BLE001
            errors["duplicate"] = exc
        await connection.execute("SELECT pg_terminate_backend($1)", victim.get_server_pid())
        # the victim's backend is gone, and its last message (57P01) has reached the victim's protocol: used before
        # that, asyncpg says only that another operation is in progress (InternalClientError)
        while await connection.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", victim.get_server_pid()
        ):
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        try:
            await victim.fetchval("SELECT 1")
        except Exception as exc:  # noqa: BLE001
            errors["terminated"] = exc
    finally:
        await connection.close()
        await victim.close()
    return errors


async def test_driver_errors_are_classified_bare_and_wrapped(engine, database_url):
    bare = await _real_errors(plain_url(database_url))
    assert isinstance(bare["nul"], asyncpg.CharacterNotInRepertoireError)  # as the hot reads see it
    wrapped = {}
    async with engine.connect() as connection:
        for name, statement, params in [
            ("nul", "SELECT CAST(:v AS text)", {"v": "a\x00b"}),
            ("bigint", "SELECT CAST(:v AS bigint)", {"v": 2**70}),
        ]:
            try:
                await connection.execute(text(statement), params)
            except Exception as exc:  # noqa: BLE001
                wrapped[name] = exc
            await connection.rollback()
    statuses = {
        name: (await handle_unexpected(_request(), exc)).status_code
        for name, exc in [*bare.items(), *((f"wrapped {n}", e) for n, e in wrapped.items())]
    }
    assert statuses == {
        "nul": 422,
        "bigint": 422,
        "bug": 500,
        "duplicate": 409,  # another request committed the key first: a conflict with the state, not a bug
        "terminated": 503,
        "wrapped nul": 422,
        "wrapped bigint": 422,
    }


async def test_a_logged_traceback_names_the_error_but_quotes_no_value(engine, database_url, caplog):
    errors = await _real_errors(plain_url(database_url))
    async with engine.connect() as connection:  # SQLAlchemy's text adds the statement and its parameters
        await connection.execute(text("CREATE TEMP TABLE person (name text UNIQUE)"))
        await connection.execute(text("INSERT INTO person VALUES (:v)"), {"v": VALUE})
        try:
            await connection.execute(text("INSERT INTO person VALUES (:v)"), {"v": VALUE})
        except Exception as exc:  # noqa: BLE001
            errors["wrapped duplicate"] = exc
    assert "Key (name)=(Zelda Quuxington) already exists" in str(errors["duplicate"].detail)
    log = logging.getLogger("tests.traceback")
    with caplog.at_level(logging.ERROR, logger="tests.traceback"):
        for exc in errors.values():
            try:
                raise RuntimeError(f"a failure with {VALUE}") from exc
            except RuntimeError:
                log.exception("failed")
    lines = [JsonFormatter().format(record) for record in caplog.records]
    assert len(lines) == len(errors) == 6
    for line in lines:
        assert "Zelda" not in line and "2**70" not in line and "1180591620717411303424" not in line, line
        assert "builtins.RuntimeError" in line and "Traceback" in line
    duplicate = lines[list(errors).index("duplicate")]
    assert "UniqueViolationError (sqlstate=23505, constraint_name=person_name_key, table_name=person)" in duplicate


async def test_a_write_while_the_database_shuts_down_is_a_503(test_settings, tmp_path):
    """A smart shutdown: sessions already open go on, new connections get 57P03 "the database system is shutting
    down". The write needs a new connection (its key is already known to the instance)."""
    import pgserver
    from pgserver._commands import pg_ctl

    server = await asyncio.to_thread(pgserver.get_server, tmp_path / "pg", cleanup_mode="delete")
    url = await asyncio.to_thread(create_database, server.get_uri(), "tierwise")
    await asyncio.to_thread(upgrade_to_head, url)
    keys = await _make_keys(url)
    settings = test_settings.model_copy(
        update={"api_key_pepper": "live-pepper-0123456789", "api_key_cache_seconds": 300}
    )
    engine = create_engine(url, settings)
    holder = await asyncpg.connect(plain_url(url))
    try:
        app = create_app(settings, sessionmaker=create_sessionmaker(engine))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            headers = {"X-API-Key": keys["integration"]}
            assert (await client.put("/v1/customers/SD-1", json=customer_body(), headers=headers)).status_code == 201
            await engine.dispose()  # the next write needs a new connection
            await asyncio.to_thread(
                pg_ctl, ["-m", "smart", "-W", "stop"], pgdata=server.pgdata, user=server.system_user
            )
            with pytest.raises(asyncpg.CannotConnectNowError):
                for _ in range(50):
                    await (await asyncpg.connect(plain_url(url))).close()
                    await asyncio.sleep(0.1)
            response = await client.put(
                "/v1/customers/SD-1", json=customer_body(segment="small_business"), headers=headers
            )
        assert response.status_code == 503, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "2"
    finally:
        await holder.close()
        await engine.dispose()
        await asyncio.to_thread(server.cleanup)


def _deep_policy(levels: int) -> str:
    condition = '{"not": ' * levels + '{"always": true}' + "}" * levels
    return (
        '{"policy_key": "deep", "name": "Deep", "tiers": [{"code": "a", "label": "A", "rank": 1, "condition": '
        + condition
        + "}]}"
    )


@pytest.mark.parametrize(
    ("path", "body", "pointer"),
    [
        ("/v1/tier-policies", _deep_policy(5000), "/tiers/0/condition" + "/not" * (MAX_BODY_DEPTH - 3)),
        (
            "/v1/tier-policies/wealth/versions/1/evaluate",
            '{"attributes": {"held_products": ' + "[" * 5000 + "]" * 5000 + "}}",
            "/attributes/held_products" + "/0" * (MAX_BODY_DEPTH - 2),
        ),
    ],
)
async def test_a_body_too_deep_for_the_parser_is_a_422_with_a_pointer(client, as_role, path, body, pointer):
    response = await client.post(path, content=body, headers={**as_role("admin"), "content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["pointer"] for e in response.json()["errors"]] == [pointer]
    assert f"more than {MAX_BODY_DEPTH} levels" in response.json()["errors"][0]["detail"]


async def test_a_policy_nested_a_thousand_deep_is_a_422_at_its_condition(client, as_role):
    """Python 3.11's json.loads gives up near 1,000 levels (the body's depth limit answers), 3.12's reads it (the
    condition's depth limit answers, as for any shallower document): a 422 pointing into the condition either way."""
    response = await client.post(
        "/v1/tier-policies",
        content=_deep_policy(1000),
        headers={**as_role("admin"), "content-type": "application/json"},
    )
    assert response.status_code == 422, response.text
    error = response.json()["errors"][0]
    assert error["pointer"].startswith("/tiers/0/condition" + "/not" * 8) and "levels deep" in error["detail"]


async def test_a_shallower_deep_condition_points_at_the_condition_limit(client, as_role):
    body = {
        "policy_key": "deep",
        "name": "Deep",
        "tiers": [
            {
                "code": "a",
                "label": "A",
                "rank": 1,
                "condition": {
                    "not": {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"not": {"always": True}}}}}}}}}
                },
            }
        ],
    }
    response = await client.post("/v1/tier-policies", json=body, headers=as_role("admin"))
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/tiers/0/condition" + "/not" * 8
