"""The one error format: RFC 9457 application/problem+json, for every error the service returns."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
PROBLEM_TYPE_BASE = "https://tierwise.dev/problems/"


class AppError(Exception):
    """Base of every error a domain raises; rendered as problem+json by one handler."""

    status: int = 400
    title: str = "Bad request"
    slug: str = "bad-request"

    def __init__(self, detail: str | None = None, *, errors: list[dict[str, Any]] | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
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


def problem(status: int, title: str, detail: str, slug: str, *, errors: list | None = None,
            headers: dict[str, str] | None = None, instance: str | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": PROBLEM_TYPE_BASE + slug, "title": title, "status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    body.update({k: v for k, v in extra.items() if k not in body})  # extensions never replace the standard members
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _pointer(loc: tuple) -> tuple[str, str]:
    """(location, JSON pointer) for a pydantic error location such as ('body', 'items', 0, 'amount')."""
    if not loc:
        return "body", ""
    where, rest = str(loc[0]), loc[1:]
    parts = [str(p).replace("~", "~0").replace("/", "~1") for p in rest]
    return where, "/" + "/".join(parts)


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
    return problem(exc.status, exc.title, exc.detail, exc.slug, errors=exc.errors, headers=exc.headers,
                   instance=request.url.path, **exc.extra)


async def handle_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    errors = validation_errors(exc.errors())
    return problem(422, "Validation failed", _describe(errors), "validation-failed", errors=errors,
                   instance=request.url.path)


async def handle_http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    titles = {404: "Not found", 405: "Method not allowed", 401: "Unauthorized", 403: "Forbidden",
              413: "Payload too large", 400: "Bad request"}
    title = titles.get(exc.status_code, "HTTP error")
    detail = exc.detail if isinstance(exc.detail, str) else title
    return problem(exc.status_code, title, detail, title.lower().replace(" ", "-"),
                   headers=getattr(exc, "headers", None), instance=request.url.path)


def _database_unavailable(exc: Exception) -> bool:
    if isinstance(exc, (PoolTimeoutError, InterfaceError, ConnectionError, OSError)):
        return True
    if isinstance(exc, (OperationalError, DBAPIError)) and exc.connection_invalidated:
        return True
    text = type(getattr(exc, "orig", exc)).__name__
    return text in {"ConnectionDoesNotExistError", "CannotConnectNowError", "ConnectionFailureError",
                    "TooManyConnectionsError", "AdminShutdownError"}


# Postgres data exceptions that only a value from the request can cause: a NUL character in text or JSON, a number
# or date out of the column's range, a string longer than its column.
UNSTORABLE_VALUE_STATES = {"22021": "a character the database cannot store (such as NUL, \\u0000)",
                           "22P05": "a character the database cannot store (such as NUL, \\u0000)",
                           "22003": "a number out of range", "22008": "a date or time out of range",
                           "22001": "a string longer than allowed"}


def _unstorable_value(exc: Exception) -> str | None:
    if not isinstance(exc, DBAPIError):
        return None
    driver = getattr(exc.orig, "driver_exception", exc.orig)
    if type(driver).__name__ == "DataError" and str(driver).startswith("invalid input for query argument"):
        return "a value out of range for the database"  # refused by the driver before it reached Postgres
    return UNSTORABLE_VALUE_STATES.get(getattr(driver, "sqlstate", None) or getattr(exc.orig, "pgcode", None))


async def handle_unexpected(request: Request, exc: Exception) -> JSONResponse:
    if (what := _unstorable_value(exc)) is not None:
        log.warning("unstorable value refused", extra={"error": type(exc).__name__})
        return problem(422, "Validation failed", f"The request contains {what}.", "validation-failed",
                       instance=request.url.path)
    if _database_unavailable(exc):
        log.warning("database unavailable", extra={"error": type(exc).__name__})
        return problem(503, "Service unavailable", "The database is unavailable; retry shortly.",
                       "service-unavailable", headers={"Retry-After": "2"}, instance=request.url.path)
    log.exception("unhandled error", extra={"error": type(exc).__name__})
    return problem(500, "Internal server error", "An unexpected error occurred.", "internal-error",
                   instance=request.url.path)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AppError, handle_app_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(StarletteHTTPException, handle_http_exception)
    app.add_exception_handler(Exception, handle_unexpected)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries that show a route's problem+json errors in Swagger."""
    descriptions = {400: "Bad request", 401: "Missing or unknown API key", 403: "The key lacks the scope",
                    404: "Not found", 409: "Conflict", 412: "Precondition failed (stale ETag)",
                    413: "Payload too large", 422: "Validation failed", 429: "Rate limited",
                    503: "Database unavailable"}
    return {s: {"description": descriptions.get(s, "Error"), "model": Problem,
                "content": {PROBLEM_JSON: {}}} for s in statuses}




class ProblemFieldError(BaseModel):
    location: str | None = None
    pointer: str | None = None
    parameter: str | None = None
    detail: str
    type: str | None = None


class Problem(BaseModel):
    """An RFC 9457 problem detail."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[ProblemFieldError] | None = None
