"""The HTTP server's protocol: uvicorn's (httptools), answering a request it cannot parse as the app answers
every error, with problem+json, where uvicorn answers text/plain.

The parser refuses some requests before the app can see them (control characters in a header, bytes that are not
UTF-8 in the path, a malformed request line or Content-Length): the server then answers 400 and closes the
connection, as HTTP requires after a request whose end it cannot know.
"""

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


class ProblemHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol; `tierwise serve` runs it (uvicorn --http app.core.server:ProblemHttpProtocol)."""

    def send_400_response(self, msg: str) -> None:
        default = [name + b": " + value + b"\r\n" for name, value in self.server_state.default_headers]
        self.transport.write(b"".join([*_HEAD, *default, b"\r\n", _BODY]))
        self.transport.close()
