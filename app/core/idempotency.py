"""Idempotency-Key on every POST that creates: a retried request gets the first response again, never a second write.

A route opts in by declaring itself with `creates` instead of `router.post`:

    @creates(router, "", location="/v1/webhooks/{id}", response_model=WebhookCreated,
             responses=problem_responses(422))
    async def create_webhook(body: WebhookCreate, session: SessionDep, ...) -> WebhookCreated:
        ...   # return an instance of the response model

With `audit=` (app.audit.service.created(action, entity, key field)), the creation is audited by the calling key,
with the response body as the record's `after`, in the request's transaction; a replay audits nothing (it writes
nothing).

The route gets an optional `Idempotency-Key` header (documented in OpenAPI), its 201 (or `status_code=202`)
response a `Location` header made from the response body's fields, and this behaviour when a key is sent:

- The key is claimed (a row keyed by the calling API key and the key) in the request's transaction before the
  endpoint runs, and the response (status, body, Location and the other headers the endpoint set) is stored in the
  same transaction as the endpoint's write: both commit or neither does. A request that fails stores nothing, so
  its retry runs again.
- The same key with the same request (method, path, query and body; JSON compared canonically) from the same API
  key replays the stored response, with `Idempotent-Replayed: true`. With another request: 422 problem+json
  naming the `Idempotency-Key` header. Keys of different API keys never meet.
- Two requests with the same key at once: the second waits for the first (its claim waits on the first's
  uncommitted row in the unique index) and then replays the first's response; if the first failed, the second
  runs. Nobody gets a 409, nothing is written twice.
- Keys expire after TIERWISE_IDEMPOTENCY_KEY_HOURS (24); `purge_expired` runs on the schedule. An expired key is
  a new key.

Stored responses are sealed (app/core/crypto.py): they can hold a secret shown once or a customer's own words.
"""

import hashlib
import inspect
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from functools import wraps
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from sqlalchemy import BigInteger, DateTime, Index, LargeBinary, SmallInteger, String, func, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from app.core.crypto import open_sealed, seal
from app.core.db import Base, SessionDep
from app.core.errors import Conflict, InvalidInput

HEADER = "Idempotency-Key"
PURPOSE = "idempotent-response"


class IdempotencyKey(Base):
    """A claimed Idempotency-Key and the first response to it (status null only while its request is in flight)."""

    __tablename__ = "idempotency_key"
    __table_args__ = (Index("ix_idempotency_key_expires_at", "expires_at"),)

    api_key_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    fingerprint: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int | None] = mapped_column(SmallInteger)
    response: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias=HEADER,
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Any unique string (a UUID) naming this request: a retry with the same key and body gets the "
        "first response again instead of a second write; the same key with another body is a 422. "
        "Kept 24 hours.",
    ),
]

AuditCreated = Callable[[AsyncSession, Request, dict[str, Any]], Awaitable[None]]
"""Records what a POST created: given the session, the request and the response body (JSON-ready)."""

LOCATION_HEADER = {"Location": {"description": "The URL of the created resource.", "schema": {"type": "string"}}}

# Claim the key: a new key, or one that expired. A conflicting row another transaction is writing makes this wait
# until that transaction ends (then its row is seen, or, rolled back, the key is free and this claims it).
_CLAIM = text("""
INSERT INTO idempotency_key AS k (api_key_id, key, fingerprint, expires_at)
VALUES (:api_key_id, :key, :fingerprint, now() + make_interval(secs => :ttl))
ON CONFLICT (api_key_id, key) DO UPDATE SET fingerprint = excluded.fingerprint, created_at = now(),
    expires_at = excluded.expires_at, status_code = NULL, response = NULL
WHERE k.expires_at <= now()
RETURNING true
""")
_STORED = text(
    "SELECT fingerprint, status_code, response FROM idempotency_key WHERE api_key_id = :api_key_id AND key = :key"
)
_STORE = text(
    "UPDATE idempotency_key SET status_code = :status_code, response = :response "
    "WHERE api_key_id = :api_key_id AND key = :key"
)
_PURGE = text(
    "DELETE FROM idempotency_key WHERE ctid = ANY(ARRAY(SELECT ctid FROM idempotency_key "
    "WHERE expires_at <= now() LIMIT 10000))"
)


def creates(
    router: APIRouter,
    path: str,
    *,
    location: str,
    status_code: int = 201,
    responses: dict | None = None,
    audit: AuditCreated | None = None,
    **route_kwargs: Any,
) -> Callable:
    """`router.post(path, ...)` for a POST that creates: Idempotency-Key honoured, Location on the 201/202.
    `location` is formatted with the response body's top-level fields ("/v1/webhooks/{id}"); `audit` records the
    creation from the response body."""
    documented = {**(responses or {})}
    if status_code in (201, 202):  # a 200 (an action that records something, no new resource) has no Location
        declared = documented.get(status_code, {})
        documented[status_code] = {**declared, "headers": {**declared.get("headers", {}), **LOCATION_HEADER}}

    def decorate(endpoint: Callable) -> Callable:
        signature = inspect.signature(endpoint)
        # FastAPI passes the Request and the Response to one parameter each: reuse the endpoint's own, if any.
        own = {p.annotation: name for name, p in signature.parameters.items() if p.annotation in (Request, Response)}
        request_name = own.get(Request, "_idempotency_request")
        response_name = own.get(Response, "_idempotency_response")
        extra = [
            inspect.Parameter(
                "_idempotency_key", inspect.Parameter.KEYWORD_ONLY, annotation=IdempotencyKeyHeader, default=None
            ),
            inspect.Parameter("_idempotency_session", inspect.Parameter.KEYWORD_ONLY, annotation=SessionDep),
        ]
        extra += [
            inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=kind)
            for kind, name in ((Request, request_name), (Response, response_name))
            if kind not in own
        ]

        @wraps(endpoint)
        async def idempotent_endpoint(
            *args, _idempotency_key: str | None, _idempotency_session: AsyncSession, **kwargs
        ):
            session = _idempotency_session
            request = kwargs[request_name] if Request in own else kwargs.pop(request_name)
            response = kwargs[response_name] if Response in own else kwargs.pop(response_name)
            if _idempotency_key is not None:
                claimed = await _claim(session, request, _idempotency_key)
                if claimed is not None:
                    return claimed
            result = await endpoint(*args, **kwargs)
            if isinstance(result, Response):
                return result  # the endpoint answered itself (not a creation): nothing to add or store
            content = jsonable_encoder(result)
            if audit is not None:
                await audit(session, request, content)
            status = response.status_code or status_code
            if status in (201, 202):
                response.headers["Location"] = location.format_map(content)
            if _idempotency_key is None:
                return result
            headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
            stored = json.dumps({"body": content, "headers": headers}, separators=(",", ":")).encode()
            await session.execute(
                _STORE,
                {
                    "api_key_id": _api_key_id(request),
                    "key": _idempotency_key,
                    "status_code": status,
                    "response": seal(_settings(request).encryption_key, PURPOSE, stored),
                },
            )
            return JSONResponse(content, status_code=status, headers=headers)

        idempotent_endpoint.__signature__ = signature.replace(parameters=[*signature.parameters.values(), *extra])
        return router.post(path, status_code=status_code, responses=documented, **route_kwargs)(idempotent_endpoint)

    return decorate


async def _claim(session: AsyncSession, request: Request, key: str) -> Response | None:
    """None when this request holds the key now (and runs); else the stored response to replay."""
    api_key_id = _api_key_id(request)
    fingerprint = await request_fingerprint(request)
    params = {"api_key_id": api_key_id, "key": key}
    if await session.scalar(
        _CLAIM, {**params, "fingerprint": fingerprint, "ttl": _settings(request).idempotency_key_hours * 3600}
    ):
        return None
    stored = (await session.execute(_STORED, params)).one()
    if stored.fingerprint != fingerprint:
        raise InvalidInput(
            HEADER,
            "this key was used for another request (method, path or body); use a new key for a new request",
            location="header",
        )
    if stored.status_code is None:  # not reachable while responses are stored in the claim's transaction
        raise Conflict("A request with this Idempotency-Key is in flight; retry shortly.", headers={"Retry-After": "1"})
    replay = json.loads(open_sealed(_settings(request).encryption_key, PURPOSE, stored.response))
    return JSONResponse(
        replay["body"], status_code=stored.status_code, headers={**replay["headers"], "Idempotent-Replayed": "true"}
    )


async def request_fingerprint(request: Request) -> str:
    """SHA-256 of the method, path, query and body (JSON bodies in canonical form, so key order does not count)."""
    body = await request.body()
    try:
        body = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    except (ValueError, UnicodeDecodeError):
        pass
    digest = hashlib.sha256()
    for part in (request.method.encode(), request.url.path.encode(), request.url.query.encode(), body):
        digest.update(len(part).to_bytes(8, "big") + part)
    return digest.hexdigest()


def _api_key_id(request: Request) -> int:
    principal = getattr(request.state, "principal", None)
    if principal is None:
        raise RuntimeError("creates(): the route must authorize its caller (require_scope) to scope keys by API key")
    return principal.key_id


def _settings(request: Request):
    return request.app.state.settings


async def purge_expired(session: AsyncSession) -> dict:
    """Delete expired keys, ten thousand a statement; the caller commits."""
    purged = 0
    while (deleted := (await session.execute(_PURGE)).rowcount) > 0:
        purged += deleted
        if deleted < 10000:
            break
    return {"idempotency_keys_purged": purged}
