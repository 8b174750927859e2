"""The hottest reads, answered in front of the framework's routing and dependency machinery.

A mobile app opens with GET /v1/customers/{id}/tiers and .../recommendations; FastAPI's routing over every route and
its dependency solving cost more than the database lookup itself (bench/bench_reads.py; bench/HISTORY.md). A
`HotRead` declares such a route once: its FastAPI route (which Swagger documents, and which serves the request
whenever this path does not) and this dispatcher call the same `render` function, behind the same authorization,
with the same query model, and with the same problem+json errors, so the two cannot differ; both serialize the
route's response schema (app/core/serializers.py). Anything this dispatcher is not sure of (another method, a path
parameter that does not match its pattern, a query string the read does not take or that fails its model) goes on
to FastAPI, which answers it, errors included, as usual.
"""

import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.db import ReplicaUnavailable, read_connection, replica_error, replica_failed
from app.core.errors import AppError, Unauthorized, handle_app_error, handle_unexpected
from app.core.i18n import language_headers, negotiate
from app.core.replicas import CONSISTENCY_HEADER
from app.core.security import Scope as ApiScope
from app.core.security import authorize

JSON_HEADERS = [(b"content-type", b"application/json")]
CONSISTENCY_HEADER_BYTES = CONSISTENCY_HEADER.lower().encode()
QUERY_STRINGS_KEPT, QUERY_STRING_KEPT_BYTES = 1024, 512


@dataclass(frozen=True)
class Answer:
    """A hot read's document, sent once `ready` is done: what the read still waits for needs no connection (the
    grouped commit of a served list, app/recommendations/served.py), so its connection goes back to the pool first
    and a request waiting for a commit holds none."""

    body: bytes
    ready: Awaitable[None]


async def answered(rendered: "bytes | Answer") -> bytes:
    """The document of a render, once it is ready."""
    if isinstance(rendered, Answer):
        await rendered.ready
        return rendered.body
    return rendered


@dataclass(frozen=True)
class HotRead:
    """A GET route served by `render(connection, state, **path_params)` -> JSON bytes or an `Answer` (plus `query=`
    an instance of `query` when the route takes query parameters), where `connection` is an asyncpg connection of
    the hot pool (app.core.db.read_connection: committed data, no ORM session, no transaction: a write is one
    statement).

    path: the route's template, e.g. /v1/customers/{customer_id}/tiers; params: a regular expression for each
    path parameter (the same constraint the route's type declares); query: the pydantic model the route declares
    its query parameters with (FastAPI's query parameter model), or None for a route that takes none; language:
    the document is in the customer's language, `render` takes `language=` (negotiated from Accept-Language as
    app.core.i18n.request_language does for the route) and the response says it in Content-Language; replica: a
    read replica in rotation may serve it (app/core/replicas.py), as far as the caller's consistency token says
    (False: the primary always does, for a read that writes or reads what replicas do not have)."""

    path: str
    scope: ApiScope
    params: dict[str, str]
    render: Callable[..., Awaitable[bytes | Answer]]
    query: type[BaseModel] | None = None
    language: bool = False
    replica: bool = True

    def pattern(self) -> re.Pattern[str]:
        regex = re.escape(self.path)
        for name, param in self.params.items():
            regex = regex.replace(re.escape("{" + name + "}"), f"(?P<{name}>{param.strip('^$')})")
        return re.compile(regex)

    @cached_property
    def _list_fields(self) -> frozenset[str]:
        return frozenset(
            name for name, info in self.query.model_fields.items() if typing.get_origin(info.annotation) is list
        )

    @cached_property
    def _default_query(self) -> BaseModel | None:
        return self.query.model_validate({}) if self.query is not None else None

    @cached_property
    def _parsed(self) -> dict[bytes, BaseModel | None | bool]:
        """Query strings already read (at most QUERY_STRINGS_KEPT, each of up to QUERY_STRING_KEPT_BYTES): an app
        sends the same few over and over, and reading one (parsing, then validating the model) is a measurable
        share of a recommendation's Python (bench/HISTORY.md)."""
        return {}

    def parse_query(self, query_string: bytes) -> BaseModel | None | bool:
        """The route's query model from a query string; False when FastAPI should answer (a parameter the
        model does not know, a value that fails it): FastAPI then gives its own 422 or ignores what it ignores.
        One model per distinct query string, shared by the requests that send it: read-only (frozen)."""
        parsed = self._parsed.get(query_string)
        if parsed is None:
            parsed = self._parse_query(query_string)
            if len(query_string) <= QUERY_STRING_KEPT_BYTES:
                if len(self._parsed) >= QUERY_STRINGS_KEPT:
                    self._parsed.clear()
                self._parsed[query_string] = parsed
        return parsed

    def _parse_query(self, query_string: bytes) -> BaseModel | None | bool:
        if not query_string:
            return self._default_query
        if self.query is None:
            return False
        values: dict[str, Any] = {}
        for name, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if name not in self.query.model_fields:
                return False
            if name in self._list_fields:
                values.setdefault(name, []).append(value)
            elif name in values:
                return False
            else:
                values[name] = value
        try:
            return self.query.model_validate(values)
        except ValidationError:
            return False


class HotReads:
    """ASGI middleware: serves the declared hot reads, passes every other request on."""

    def __init__(self, app: ASGIApp, reads: list[HotRead], routes: dict[str, Any]) -> None:
        self.app = app
        self.reads = [(read, read.pattern(), routes[read.path]) for read in reads]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            for read, pattern, route in self.reads:
                match = pattern.fullmatch(scope["path"])
                if match is None:
                    continue
                query = read.parse_query(scope["query_string"])
                if query is False:
                    break  # not a query this path takes as it stands: FastAPI answers
                arguments = match.groupdict()
                if query is not None:
                    arguments["query"] = query
                if read.language:
                    arguments["language"] = _language(scope)
                scope["route"] = route  # for the access log and metrics, as if the router had matched it
                await self._serve(read, arguments, scope, receive, send)
                return
        await self.app(scope, receive, send)

    @staticmethod
    async def _render(read: HotRead, arguments, state, replica, key: str | None, scope: Scope) -> bytes:
        """The read on a connection of `replica`'s read pool, or of the primary's (None)."""
        async with read_connection(state, replica) as connection:
            if replica is not None:
                principal = await state.resolve_principal(connection, key) if key else None
                if principal is None:
                    raise Unauthorized("The API key is unknown here.")  # retried on the primary, which counts it
            await authorize(state, connection, key, read.scope, scope)
            rendered = await read.render(connection, state, **arguments)
        return await answered(rendered)

    async def _serve(
        self, read: HotRead, arguments: dict[str, Any], scope: Scope, receive: Receive, send: Send
    ) -> None:
        app = scope["app"]
        key = _header(scope, b"x-api-key")
        replicas = app.state.replicas
        replica = None
        if replicas is not None and read.replica:
            replica = replicas.choose(_header(scope, CONSISTENCY_HEADER_BYTES))
        try:
            try:
                body = await self._render(read, arguments, app.state, replica, key, scope)
            except Exception as exc:
                if replica is None:
                    raise
                if isinstance(exc, Unauthorized):
                    pass  # a key created since the replica's last replay: the primary decides (and counts a failure)
                elif replica_error(exc):  # the replica failed under this read (down, lost, cancelled): the primary
                    cause = (exc.__cause__ or exc) if isinstance(exc, ReplicaUnavailable) else exc
                    replica_failed(replicas, replica, cause)
                else:
                    raise
                body = await self._render(read, arguments, app.state, None, key, scope)
        except AppError as exc:
            await (await handle_app_error(Request(scope), exc))(scope, receive, send)
            return
        except Exception as exc:  # the same 503 / 500 problem+json as every other route
            await (await handle_unexpected(Request(scope), exc))(scope, receive, send)
            return
        headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
        if read.language:
            language = language_headers(arguments["language"])
            headers += [(name.lower().encode(), value.encode()) for name, value in language.items()]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _header(scope: Scope, name: bytes) -> str | None:
    for header, value in scope["headers"]:
        if header == name:
            return value.decode("latin-1")
    return None


def _language(scope: Scope) -> str:
    header = None
    for name, value in scope["headers"]:
        if name == b"accept-language":
            header = value.decode("latin-1")
            break
    settings = scope["app"].state.settings
    return negotiate(header, settings.languages, settings.default_language)
