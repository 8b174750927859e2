"""The server's protocol (app/core/server.py): a response's head and body reach the socket in one write, and what
is waiting is written before the connection closes (a request the parser refuses is still answered)."""

import asyncio
import json

import uvicorn

from app.core.server import ProblemHttpProtocol, _OneWrite


class _Transport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name, default=None):
        return default


async def test_writes_in_one_turn_of_the_loop_are_one_write():
    transport = _Transport()
    one = _OneWrite(transport)  # type: ignore[arg-type]
    one.write(b"HTTP/1.1 200 OK\r\n\r\n")
    one.write(b"body")
    assert transport.writes == []
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
    one.write(b"next")
    one.close()  # closing writes what waits, before the close
    assert transport.writes[-1] == b"next" and transport.closed
    await asyncio.sleep(0)
    assert len(transport.writes) == 2
    assert one.get_extra_info("peername", "none") == "none"  # the rest is the transport's


async def _app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b'{"ok": true}'
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _exchange(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(65536), 5)
    writer.close()
    return data


async def test_a_served_response_arrives_whole_and_a_refused_request_is_answered():
    config = uvicorn.Config(_app, host="127.0.0.1", port=0, http=ProblemHttpProtocol, log_config=None, lifespan="off")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        # one read gets the head and the body: they were written at once
        ok = await _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert ok.startswith(b"HTTP/1.1 200 OK\r\n") and ok.endswith(b'\r\n\r\n{"ok": true}')
        refused = await _exchange(port, b"GET /\x01 HTTP/1.1\r\nHost: x\r\n\r\n")
        head, _, body = refused.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 ") and b"connection: close" in head
        assert json.loads(body)["status"] == 400
    finally:
        server.should_exit = True
        await task
