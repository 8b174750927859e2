"""A real webhook receiver on loopback (for the tests and bench/webhook_outage.py): an HTTP/1.1 server on its own
port that can answer 200, fail (500), hang past the sender's timeout, or be down (its port closed: connections
are refused), and that checks every signature with the snippet the documentation gives (app/webhooks/signing.py,
run as written)."""

import asyncio
import json
import re
import textwrap
import time
from dataclasses import dataclass, field

from app.webhooks import signing


def documented_verify():
    """The `verify` function of the documented snippet, executed from the docstring itself."""
    block = re.search(r"\n( {4}import hashlib.*?)(?:\n\S|\Z)", signing.__doc__, re.S).group(1)
    namespace: dict = {}
    exec(textwrap.dedent(block), namespace)  # noqa: S102 (our own documentation)
    return namespace["verify"]


@dataclass
class Received:
    event_id: str
    event_type: str
    body: dict
    raw: bytes
    signature: str
    verified: bool
    status: int
    at: float
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names


@dataclass
class Receiver:
    secret: str | None = None  # checked when set (set it once the subscription exists)
    mode: str = "ok"  # ok | fail | hang
    hang_s: float = 5.0
    delay_s: float = 0.0  # ok, after this long
    fail_times: dict[str, int] = field(default_factory=dict)  # event id: answer 500 this many more times
    port: int = 0
    requests: list[Received] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight_per_event: int = 0
    _server: asyncio.Server | None = None
    _verify = None
    _writers: set = field(default_factory=set)
    _handlers: set = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def start(self) -> "Receiver":
        self._verify = self._verify or documented_verify()
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        """Down: the port is closed, so new connections are refused (open ones are cut)."""
        if self._server is not None:
            self._server.close()
            for writer in list(self._writers):
                writer.close()
            await asyncio.gather(*self._handlers, return_exceptions=True)  # each sees its connection end
            await self._server.wait_closed()
            self._server = None

    def delivered(self) -> list[Received]:
        """The requests answered 2xx, in the order they arrived."""
        return [r for r in self.requests if 200 <= r.status < 300]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        self._handlers.add(asyncio.current_task())
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {}
                for line in head.decode("latin-1").split("\r\n")[1:]:
                    if ":" in line:
                        name, value = line.split(":", 1)
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                status = await self._answer(headers, body)
                writer.write(
                    f"HTTP/1.1 {status} X\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{{}}".encode()
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._writers.discard(writer)
            self._handlers.discard(asyncio.current_task())
            writer.close()

    async def _answer(self, headers: dict, body: bytes) -> int:
        event_id = headers.get("tierwise-event-id", "")
        self.in_flight[event_id] = self.in_flight.get(event_id, 0) + 1
        self.max_in_flight_per_event = max(self.max_in_flight_per_event, self.in_flight[event_id])
        try:
            mode = self.mode
            if self.fail_times.get(event_id, 0) > 0:
                self.fail_times[event_id] -= 1
                mode = "fail"
            if mode == "hang":
                await asyncio.sleep(self.hang_s)  # the sender gave up long ago: recorded as status 0
            elif self.delay_s:
                await asyncio.sleep(self.delay_s)
            status = {"ok": 200, "fail": 500, "hang": 0}[mode]
            signature = headers.get("tierwise-signature", "")
            verified = self.secret is not None and self._verify(self.secret, body, signature)
            if self.secret is not None and not verified and status:
                status = 401
            self.requests.append(
                Received(
                    event_id,
                    headers.get("tierwise-event-type", ""),
                    json.loads(body),
                    body,
                    signature,
                    verified,
                    status,
                    time.monotonic(),
                    headers,
                )
            )
            return status
        finally:
            self.in_flight[event_id] -= 1
