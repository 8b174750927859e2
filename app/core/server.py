"""The HTTP server's protocol: uvicorn's (httptools), answering a request it cannot parse as the app answers
every error, with problem+json, where uvicorn answers text/plain, and writing a response's head and body to the
socket at once.

The parser refuses some requests before the app can see them (control characters in a header, bytes that are not
UTF-8 in the path, a malformed request line or Content-Length): the server then answers 400 and closes the
connection, as HTTP requires after a request whose end it cannot know.
"""

import asyncio
import json

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.core.errors import PROBLEM_JSON, PROBLEM_TYPE_BASE

_BODY = json.dumps(
    {
        "type": PROBLEM_TYPE_BASE + "bad-request",
        "title": "Bad request",
        "status": 400,
        "detail": "The request is not valid HTTP (a malformed request line or header, a control "
        "character, or a path that is not UTF-8).",
    }
).encode()
_HEAD = [
    b"HTTP/1.1 400 Bad Request\r\n",
    b"content-type: " + PROBLEM_JSON.encode() + b"\r\n",
    b"content-length: " + str(len(_BODY)).encode() + b"\r\n",
    b"connection: close\r\n",
]


class _OneWrite:
    """The connection's transport, its writes within one turn of the event loop joined into one. uvicorn writes a
    response's status line and headers, then its body: two `write` system calls, each delivering to the peer (and
    waking it) on its own; on loopback they were a fifth of the server's CPU on GET recommendations (bench/RESULTS.md,
    serve21c). Joined, the peer gets the response in one segment. Closing writes what is waiting first; everything
    else is the transport's."""

    __slots__ = ("_transport", "_waiting")

    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        self._waiting: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if self._waiting is None:
            self._waiting = [data]
            asyncio.get_running_loop().call_soon(self._flush)
        else:
            self._waiting.append(data)

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, None
        if waiting:
            self._transport.write(waiting[0] if len(waiting) == 1 else b"".join(waiting))

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class ProblemHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; `tierwise serve` runs it (uvicorn --http app.core.server:ProblemHttpProtocol)."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(_OneWrite(transport))  # type: ignore[arg-type]

    def send_400_response(self, msg: str) -> None:
        default = [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        self.transport.write(b"".join([*_HEAD, *default, b"\r\n", _BODY]))
        self.transport.close()
