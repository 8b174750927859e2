"""The one error format: RFC 9457 application/problem+json, for every error the service returns."""

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.core.database_errors import (
    concurrent_change,
    constraint_name,
    database_unavailable,
    sqlstate,
    unstorable_value,
)

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tierwise.dev/problems/"


class AppError(Exception):
    """Base of every error a domain raises; rendered as problem+json by one handler."""

    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.errors = errors
        self.headers = headers
        self.extra = extra


class NotFound(AppError):
    status, title, slug = 404, "Not found", "not-found"


class Conflict(AppError):
    status, title, slug = 409, "Conflict", "conflict"


class PreconditionFailed(AppError):
    status, title, slug = 412, "Precondition failed", "precondition-failed"


class Unauthorized(AppError):
    status, title, slug = 401, "Unauthorized", "unauthorized"


class Forbidden(AppError):
    status, title, slug = 403, "Forbidden", "forbidden"


class PayloadTooLarge(AppError):
    status, title, slug = 413, "Payload too large", "payload-too-large"


class InvalidInput(AppError):
    """A semantic validation error on a field (422), with a JSON pointer to each bad field."""

    status, title, slug = 422, "Validation failed", "validation-failed"

    def __init__(self, pointer: str, detail: str, *, location: str = "body", **extra: Any) -> None:
        """pointer: a JSON pointer into the body (/items/3/amount), or a parameter name for other locations."""
        field = {"location": location, "detail": detail}
        field["pointer" if location == "body" else "parameter"] = pointer
        super().__init__(f"{pointer}: {detail}", errors=[field], **extra)


class InvalidFields(AppError):
    """Several bad fields at once (422), each with its pointer."""

    status, title, slug = 422, "Validation failed", "validation-failed"

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(_describe(errors), errors=errors)


class ServiceUnavailable(AppError):
    status, title, slug = 503, "Service unavailable", "service-unavailable"


def problem(
    status: int,
    title: str,
    detail: str,
    slug: str,
    *,
    errors: list | None = None,
    headers: dict[str, str] | None = None,
    instance: str | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body.update({k: v for k, v in extra.items() if k not in body})  # extensions never replace the standard members
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _escape(token: str) -> str:
    """A JSON pointer reference token (RFC 6901)."""
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(loc: tuple) -> tuple[str, str]:
    """(location, JSON pointer) for a pydantic error location such as ('body', 'items', 0, 'amount')."""
    if not loc:
        return "body", ""
    where, rest = str(loc[0]), loc[1:]
    return where, "/" + "/".join(_escape(str(p)) for p in rest)


def validation_errors(exc_errors) -> list[dict[str, Any]]:
    out = []
    for err in exc_errors:
        where, pointer = _pointer(tuple(err.get("loc", ())))
        item: dict[str, Any] = {"location": where, "detail": err.get("msg", "invalid"), "type": err.get("type")}
        if where == "body":
            item["pointer"] = pointer
        else:
            item["parameter"] = pointer.lstrip("/")
        out.append(item)
    return out


def _describe(errors: list[dict[str, Any]]) -> str:
    named = [f"{e.get('pointer') or e.get('parameter') or '(body)'}: {e['detail']}" for e in errors[:5]]
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "; ".join(named) + more


async def handle_app_error(request: Request, exc: AppError) -> JSONResponse:
    return problem(
        exc.status,
        exc.title,
        exc.detail,
        exc.slug,
        errors=exc.errors,
        headers=exc.headers,
        instance=request.url.path,
        **exc.extra,
    )


def _malformed_json_pointer(document: str, position: int) -> str:
    """The JSON pointer of the member or item being read where JSON parsing failed at `position`: the field the
    client got wrong, not a character offset ("" when the fault is in the body's own shape)."""
    frames: list[list] = []  # [kind, key or index, in_value]: "{" with the member's key, "[" with the item index
    key, i = None, 0
    while i < min(position, len(document)):
        char = document[i]
        if char == '"':
            end = i + 1
            while end < len(document) and document[end] != '"':
                end += 2 if document[end] == "\\" else 1
            if frames and frames[-1][0] == "{" and not frames[-1][2]:
                try:
                    key = json.loads(document[i : end + 1])
                except ValueError:
                    key = document[i + 1 : end]
            i = end + 1
            continue
        if char in "{[":
            frames.append([char, 0 if char == "[" else None, char == "["])
        elif char in "}]" and frames:
            frames.pop()
        elif char == ":" and frames and frames[-1][0] == "{":
            frames[-1][1], frames[-1][2] = key, True
        elif char == "," and frames:
            if frames[-1][0] == "[":
                frames[-1][1] += 1
            else:
                frames[-1][2] = False
        i += 1
    if frames and frames[-1][0] == "[" and document[position : position + 1] == "]":
        frames[-1][2] = False  # a trailing comma: the array itself is at fault, not an item it lacks
    parts = [str(member).replace("~", "~0").replace("/", "~1") for _, member, in_value in frames if in_value]
    return "".join("/" + part for part in parts)


def _json_decode_errors(exc: RequestValidationError, errors: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Malformed JSON: the pointer of the field being read, and where parsing stopped in words."""
    for error, raw in zip(errors, exc.errors(), strict=True):
        if raw.get("type") == "json_invalid" and isinstance(exc.body, str):
            position = int(raw["loc"][-1])
            line = exc.body.count("\n", 0, position) + 1
            column = position - (exc.body.rfind("\n", 0, position) + 1) + 1
            error["pointer"] = _malformed_json_pointer(exc.body, position)
            error["detail"] = (
                f"malformed JSON: {raw.get('ctx', {}).get('error', 'invalid')} (line {line}, column {column})"
            )
    return errors


async def handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = _json_decode_errors(exc, validation_errors(exc.errors()))
    return problem(
        422, "Validation failed", _describe(errors), "validation-failed", errors=errors, instance=request.url.path
    )


MAX_BODY_DEPTH = 64
"""Where a JSON body too deep for the parser (json.loads: about 1,000 levels on Python 3.11, a few thousand on 3.12)
is refused: its first value nested deeper than this. Every body the parser reads meets its fields' own limits, far
shallower (a rule condition: app.rules.schema.MAX_DEPTH)."""
_JSON_TOKENS = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[][{},]', re.DOTALL)  # a string, or a bracket or comma


def pointer_past_depth(body: bytes, limit: int) -> str | None:
    """The JSON pointer of the first value nested more than `limit` levels deep in a JSON text, or None: read
    token by token without recursion, for a text too deep for json.loads."""
    path: list[list[Any]] = []  # each open container: [is an object, key or index, a key comes next]
    for match in _JSON_TOKENS.finditer(body):
        token = match.group()
        if token[:1] == b'"':
            if path and path[-1][0] and path[-1][2]:
                try:
                    path[-1][1], path[-1][2] = json.loads(token), False
                except ValueError:
                    return None
        elif token in (b"{", b"["):
            if len(path) == limit:
                return "/" + "/".join(_escape(str(level[1])) for level in path)
            path.append([token == b"{", None if token == b"{" else 0, token == b"{"])
        elif token in (b"}", b"]"):
            if path:
                path.pop()
        elif path:  # a comma
            if path[-1][0]:
                path[-1][2] = True
            else:
                path[-1][1] += 1
    return None


async def _body_too_deep(request: Request, exc: StarletteHTTPException) -> InvalidInput | None:
    """FastAPI answers a body json.loads could not read (a RecursionError) with a bare 400; that body is
    refused as any invalid body is, with a pointer."""
    if not isinstance(exc.__cause__, RecursionError):
        return None
    try:
        body = await request.body()  # the route's own request, whose body is already read
    except RuntimeError:
        return None
    pointer = pointer_past_depth(body, MAX_BODY_DEPTH)
    if pointer is None:
        return None
    return InvalidInput(pointer, f"the document is nested more than {MAX_BODY_DEPTH} levels deep")


async def handle_http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    if exc.status_code == 400 and (too_deep := await _body_too_deep(request, exc)) is not None:
        return await handle_app_error(request, too_deep)
    titles = {
        404: "Not found",
        405: "Method not allowed",
        401: "Unauthorized",
        403: "Forbidden",
        413: "Payload too large",
        400: "Bad request",
    }
    title = titles.get(exc.status_code, "HTTP error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem(
        exc.status_code,
        title,
        detail,
        title.lower().replace(" ", "-"),
        headers=getattr(exc, "headers", None),
        instance=request.url.path,
    )


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    """Any other exception: a 422 for a value the database refuses, a 409 for a change another request made under
    this one (CONCURRENT_CHANGE_STATES), a 503 while it is away, else a 500 that says
    nothing of the internals. Logged without the exception's text (app.core.logging), which quotes values."""
    if (what := unstorable_value(exc)) is not None:
        log.warning("unstorable value refused", extra={"error": type(exc).__name__, "sqlstate": sqlstate(exc)})
        return problem(
            422, "Validation failed", f"The request contains {what}.", "validation-failed", instance=request.url.path
        )
    if (what := concurrent_change(exc)) is not None:
        extra = {"error": type(exc).__name__, "sqlstate": sqlstate(exc), "constraint": constraint_name(exc)}
        log.warning("concurrent change refused", extra=extra)  # the constraint: where a domain check is missing
        return problem(
            409,
            "Conflict",
            f"The request conflicts: {what}; read again and retry.",
            "conflict",
            instance=request.url.path,
        )
    if database_unavailable(exc):
        log.warning("database unavailable", extra={"error": type(exc).__name__, "sqlstate": sqlstate(exc)})
        return problem(
            503,
            "Service unavailable",
            "The database is unavailable; retry shortly.",
            "service-unavailable",
            headers={"Retry-After": "2"},
            instance=request.url.path,
        )
    log.exception("unhandled error", extra={"error": type(exc).__name__})
    return problem(
        500, "Internal server error", "An unexpected error occurred.", "internal-error", instance=request.url.path
    )


def install_error_handlers(app: FastAPI) -> None:
    """The handlers of the errors a route raises. Every other exception is answered by handle_unexpected in
    app.core.middleware.RequestContextMiddleware, not by a handler for Exception here: Starlette runs that one in its
    outermost middleware, which re-raises after answering, and the server then drops the client's connection."""
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries that show a route's problem+json errors (with the Problem schema) in Swagger
    and to generated clients."""
    return {
        s: {
            "description": PROBLEM_DESCRIPTIONS.get(s, "Error"),
            "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
            **({"headers": RATE_LIMITED_HEADERS} if s == 429 else {"headers": RETRY_AFTER} if s == 503 else {}),
        }
        for s in statuses
    }


PROBLEM_DESCRIPTIONS = {
    400: "The body could not be read: it is not UTF-8 text",
    401: "No API key, or an unknown or revoked one",
    403: "The API key's role lacks the scope this operation needs",
    404: "Not found",
    409: "Conflict",
    412: "Precondition failed (stale ETag)",
    413: "The body exceeds the size limit (TIERWISE_MAX_BODY_BYTES, 1 MiB unless configured)",
    422: "Validation failed: malformed JSON, a bad parameter or field; `errors` names each with its JSON pointer",
    428: "Precondition required (send If-Match)",
    429: "Too many requests for this API key; retry after Retry-After seconds",
    503: "The database is unavailable; retry after Retry-After seconds",
}
RETRY_AFTER = {"Retry-After": {"description": "Seconds to wait before retrying.", "schema": {"type": "integer"}}}
RATE_LIMITED_HEADERS = {
    **RETRY_AFTER,
    "RateLimit-Limit": {
        "description": "Requests this API key (or, for failed authentications, this address) may make at once: "
        "the size of its token bucket, refilled at the role's rate (IETF RateLimit header fields draft).",
        "schema": {"type": "integer"},
    },
    "RateLimit-Remaining": {"description": "Requests left now: 0 on a 429.", "schema": {"type": "integer"}},
    "RateLimit-Reset": {
        "description": "Seconds until a request is allowed again (as Retry-After).",
        "schema": {"type": "integer"},
    },
}
RATE_LIMIT_HEADERS = {
    "RateLimit-Limit": {
        "description": "Requests this API key may make at once: the size of its token bucket, refilled at its "
        "role's rate (IETF RateLimit header fields draft). On every answer once the key is known.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Remaining": {
        "description": "Requests this API key has left in its bucket after this one.",
        "schema": {"type": "integer"},
    },
    "RateLimit-Reset": {
        "description": "Seconds until the bucket is full again (at the role's sustained rate).",
        "schema": {"type": "integer"},
    },
}


class ProblemFieldError(BaseModel):
    """One bad field: where it is (a JSON pointer into the body, or a parameter's name) and what is wrong."""

    location: str | None = Field(None, description="body, query, path or header.")
    pointer: str | None = Field(
        None, description='A JSON pointer into the body (RFC 6901), e.g. /holdings/0/balance; "" is the body itself.'
    )
    parameter: str | None = Field(None, description="The parameter's name, for query, path and header errors.")
    detail: str
    type: str | None = Field(None, description="A machine-readable kind of error, e.g. missing, json_invalid.")


class Problem(BaseModel):
    """An RFC 9457 problem detail: every error the service returns, as application/problem+json."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "https://tierwise.dev/problems/validation-failed",
                    "title": "Validation failed",
                    "status": 422,
                    "detail": '/holdings/0/balance: must be a decimal string such as "1234.50"',
                    "instance": "/v1/customers/C00000042/holdings",
                    "errors": [
                        {
                            "location": "body",
                            "pointer": "/holdings/0/balance",
                            "type": "string_type",
                            "detail": 'must be a decimal string such as "1234.50"',
                        }
                    ],
                }
            ]
        }
    )

    type: str = Field(description="A URI naming the kind of problem, e.g. https://tierwise.dev/problems/not-found.")
    title: str
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong, for a person.")
    instance: str | None = Field(None, description="The request path.")
    errors: list[ProblemFieldError] | None = Field(None, description="With 422: each bad field.")
