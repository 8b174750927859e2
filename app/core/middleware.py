"""ASGI middleware: request id, access log and Prometheus metrics, the answer to unexpected errors, and the
request body size limit."""

import itertools
import logging
import re
import time
import uuid

from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import tracing
from app.core.errors import PROBLEM_JSON, PROBLEM_TYPE_BASE, handle_unexpected
from app.core.logging import request_id_var
from app.core.replicas import CONSISTENCY_HEADER

log = logging.getLogger("tierwise.access")
error_log = logging.getLogger(__name__)

REQUESTS = Counter("tierwise_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram(
    "tierwise_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)


# A caller's request id is kept (echoed and logged) when it looks like one: a UUID, a trace id, a token. Anything
# else (spaces, an @, a character outside ASCII) could be a value worth hiding, and is replaced.
CONSISTENCY_HEADER_BYTES = CONSISTENCY_HEADER.lower().encode()
REQUEST_ID = re.compile(r"[A-Za-z0-9._:;=/+-]{1,64}")
_ID_PREFIX = uuid.uuid4().hex[:16]  # this process's, random: ids stay unique across instances and restarts
_ID_COUNTER = itertools.count(1)


def _new_request_id() -> str:
    """A unique 32-character request id: the process prefix and a counter (no system call per request)."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):016x}"


class RequestContextMiddleware:
    """Gives every request an id (X-Request-ID, echoed back) and a trace context (W3C traceparent: the caller's
    trace continued, or a new one; sent back), adds the calling key's RateLimit headers to the answer, logs it once
    with the calling key's name and counts it by route template.

    It also answers an exception no handler took (a value the database refuses, the database away, a bug) with
    app.core.errors.handle_unexpected, and keeps the client's connection: Starlette's own last resort answers, then
    re-raises, and the server closes the connection the answer went out on. An exception after a complete response
    (a background task) is logged; one in the middle of a response is raised, as the server must then close. One
    layer for both, one wrapper of `send` (each layer and wrapper is paid on every request: bench/RESULTS.md)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.series: dict[tuple[str, str, int], tuple] = {}  # (method, route, status) -> (counter, histogram)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming, traceparent = "", None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                incoming = value.decode("latin-1")
            elif name == b"traceparent":
                traceparent = value.decode("latin-1")
        request_id = incoming if REQUEST_ID.fullmatch(incoming) else _new_request_id()
        trace = tracing.for_request(traceparent)
        token, trace_token = request_id_var.set(request_id), tracing.trace_var.set(trace)
        state = scope.setdefault("state", {})  # request.state: authorize() notes the calling key's name in it
        started = time.perf_counter()
        status, complete = 0, False  # the response's status once started; whether its last body part went out

        async def send_with_id(message: Message) -> None:
            nonlocal status, complete
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [
                    *message.get("headers", ()),
                    (b"x-request-id", request_id.encode()),
                    (b"traceparent", trace.traceparent.encode()),
                ]
                if status != 429:  # the calling key's RateLimit fields (app.core.security.authorize); a 429 has its own
                    headers += state.get("rate_limit_headers", ())
                consistency = state.get("consistency_token")  # a write's, with replicas (app/core/db.py)
                if consistency is not None:
                    headers.append((CONSISTENCY_HEADER_BYTES, consistency.encode()))
                message["headers"] = headers
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if not status:
                await (await handle_unexpected(Request(scope), exc))(scope, receive, send_with_id)
            elif complete:
                error_log.exception("error after the response was sent", extra={"error": type(exc).__name__})
            else:
                raise
        finally:
            self._count(scope, status or 500, time.perf_counter() - started, state, trace)
            request_id_var.reset(token)
            tracing.trace_var.reset(trace_token)

    def _count(self, scope: Scope, status: int, elapsed: float, state: dict, trace) -> None:
        """The request counted and timed by (method, route template, status), and its access log line."""
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        key = (scope["method"], template, status)
        series = self.series.get(key)
        if series is None:  # label lookups cost more than the counting: once per (method, route, status)
            series = self.series[key] = (
                REQUESTS.labels(key[0], template, str(status)),
                LATENCY.labels(key[0], template),
            )
        series[0].inc()
        series[1].observe(elapsed)
        if log.isEnabledFor(logging.INFO):
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "route": template,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    "api_key": state.get("api_key_name"),  # the key's name, never the key
                    "trace_id": trace.trace_id,
                },
            )


class BodySizeLimitMiddleware:
    """Refuses bodies over the limit with 413 problem+json, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int, large_paths: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.large_paths = large_paths or {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        limit = self.large_paths.get(scope["path"], self.max_bytes)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _send_413(send, limit)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # An HTTPException raised while the body is read reaches the problem+json handler as a 413.
                    raise HTTPException(413, f"The request body exceeds {limit} bytes.")
            return message

        await self.app(scope, limited_receive, send)


async def _send_413(send: Send, limit: int) -> None:
    import json

    body = json.dumps(
        {
            "type": PROBLEM_TYPE_BASE + "payload-too-large",
            "title": "Payload too large",
            "status": 413,
            "detail": f"The request body exceeds {limit} bytes.",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [(b"content-type", PROBLEM_JSON.encode()), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})
