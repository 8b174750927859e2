"""On a live server (`tierwise serve`): a client keeps its keep-alive connection after any error the app answers
(a value the database refuses, a bug, the database away), and a request the HTTP parser refuses gets the same
problem+json as every other error."""

import asyncio
import json
import socket

import asyncpg
import httpx
import pytest

from tests.hardening.live_server import live_server, plain_url


@pytest.fixture
async def server(scratch_database, tmp_path):
    async with live_server(scratch_database(), tmp_path) as running:
        yield running


def _local_port(response: httpx.Response) -> int:
    """The client's own port of the connection the response came on (the server's peer port)."""
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


async def test_a_client_keeps_its_connection_after_every_error(server):
    database = await asyncpg.connect(plain_url(server.database_url))
    responses: list[tuple[str, httpx.Response]] = []
    ports: set[int] = set()
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    try:
        async with httpx.AsyncClient(
            base_url=server.base, headers=server.headers(), limits=limits, timeout=30
        ) as client:

            async def call(what: str, method: str, path: str, **kwargs) -> httpx.Response:
                response = await client.request(method, path, **kwargs)
                responses.append((what, response))
                ports.add(_local_port(response))
                return response

            await call("declared", "PUT", "/v1/attributes/custom/nickname", json={"type": "string"})
            await call(
                "refused by the database",
                "PUT",
                "/v1/customers/KA-1",
                json={
                    "segment": "retail",
                    "onboarded_at": "2020-01-01T00:00:00Z",
                    "attributes": {"nickname": "a\x00b"},
                },
            )
            await call("after the 422", "GET", "/v1/customers?limit=1")
            await database.execute("ALTER TABLE audit_event RENAME TO audit_event_away")  # a bug: a 500
            await call("a bug", "GET", "/v1/audit")
            await database.execute("ALTER TABLE audit_event_away RENAME TO audit_event")
            await call("after the 500", "GET", "/v1/customers?limit=1")
            await database.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND application_name = 'tierwise'"
            )
            await call("the database away", "GET", "/v1/customers?limit=1")
            await call("after the 503", "GET", "/v1/customers?limit=1")
            await call("invalid", "PUT", "/v1/customers/KA-1", json={"segment": "nope"})
            await call("last", "GET", "/v1/audit")
    finally:
        await database.close()
    statuses = {what: response.status_code for what, response in responses}
    assert statuses == {
        "declared": 200,
        "refused by the database": 422,
        "after the 422": 200,
        "a bug": 500,
        "after the 500": 200,
        "the database away": 503,
        "after the 503": 200,
        "invalid": 422,
        "last": 200,
    }, [(what, r.text) for what, r in responses]
    for what, response in responses:
        if response.status_code >= 400:
            assert response.headers["content-type"] == "application/problem+json", what
    assert len(ports) == 1, "the server closed the connection: the client had to open another"
    log = server.log()
    assert '"msg": "unhandled error"' in log and '"msg": "database unavailable"' in log
    assert "Exception in ASGI application" not in log  # nothing reached the server's last resort


def _raw(port: int, request: bytes) -> tuple[bytes, dict[str, str], bytes]:
    """Send bytes, read until the server closes; (status line, headers, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as connection:
        connection.sendall(request)
        received = b""
        while chunk := connection.recv(65536):
            received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status, *lines = head.split(b"\r\n")
    headers = {
        name.decode().lower(): value.decode("latin-1").strip()
        for name, _, value in (line.partition(b":") for line in lines)
    }
    return status, headers, body


# Requests httptools refuses before the app can see them: the server answers 400 and closes the connection.
REFUSED_BY_THE_PARSER = {
    "a control character in X-Request-ID": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-ID: a\x01b\r\n\r\n",
    "DEL in X-Request-ID": b"GET /healthz HTTP/1.1\r\nHost: t\r\nX-Request-ID: a\x7fb\r\n\r\n",
    "bytes that are not UTF-8 in the path": b"GET /v1/customers/\xff\xfe HTTP/1.1\r\nHost: t\r\n\r\n",
    "a NUL in the path": b"GET /v1/customers/a\x00b HTTP/1.1\r\nHost: t\r\n\r\n",
    "a Content-Length that is not a number": b"POST /v1/events HTTP/1.1\r\nHost: t\r\nContent-Length: x\r\n\r\n",
    "not HTTP at all": b"HELLO\r\n\r\n",
}


async def test_a_request_the_parser_refuses_gets_problem_json(server):
    port = int(server.base.rsplit(":", 1)[1])
    for case, request in REFUSED_BY_THE_PARSER.items():
        status, headers, body = await asyncio.to_thread(_raw, port, request)
        assert status == b"HTTP/1.1 400 Bad Request", case
        assert headers["content-type"] == "application/problem+json", case
        assert headers["connection"] == "close" and int(headers["content-length"]) == len(body), case
        assert json.loads(body)["status"] == 400 and json.loads(body)["title"] == "Bad request", case


async def test_odd_bytes_the_parser_lets_through_are_answered_by_the_app(server):
    """Percent-encoded bytes that are not UTF-8 and a Latin-1 request id reach the app, which answers as usual
    (the request id is not echoed: it is not one a caller would send)."""
    port = int(server.base.rsplit(":", 1)[1])
    key = server.keys["admin"].encode()
    status, headers, body = await asyncio.to_thread(
        _raw,
        port,
        b"GET /v1/customers/%ff%fe HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-API-Key: "
        + key
        + b"\r\nX-Request-ID: caf\xe9\r\n\r\n",
    )
    assert status.startswith(b"HTTP/1.1 422") and headers["content-type"] == "application/problem+json", body
    assert headers["x-request-id"] != "caf\xe9" and len(headers["x-request-id"]) == 32
