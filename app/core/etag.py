"""Strong ETags and conditional requests for documents that are edited: optimistic concurrency without locks held
between a client's read and its write, and 304s for unchanged reads.

The ETag is a hash of the document's canonical representation (its response model as JSON with sorted keys),
not a version column: it changes exactly when what the client sees changes, whatever path wrote the row (a bulk
statement, a migration), and it needs no schema change to adopt. It is strong: equal tags mean equal bytes.

Reads (`ConditionalGet`): the response carries the ETag; `If-None-Match` with it (or `*`) gives 304 and no body.

    @router.get("/{id}", response_model=ThingRead, responses=CONDITIONAL_GET_RESPONSES)
    async def get_thing(id: int, session: SessionDep, conditional: ConditionalGet) -> ThingRead:
        return conditional.respond(ThingRead.model_validate(await service.get_thing(session, id)))

A gzipped answer is another representation (RFC 9110 8.8.3: strong validators differ per content coding): the
gzip middleware (`GZipWithCodedETags`) sends its strong tag with a `-gzip` suffix inside the quotes ("abc-gzip"),
and If-None-Match and If-Match take either form, so a client that holds the gzipped copy gets its 304 and can write.

Writes (`ConditionalWrite`, PUT/PATCH/DELETE): `If-Match` is optional: a request without it is applied as
before (existing clients and simple scripts keep working; an integrator who wants protection from lost updates
sends the tag it read). With it, the write applies only when the document's current tag is one of those listed
(or `*`); otherwise 412 problem+json with the current tag. Check the document as it is inside the write's
transaction, after locking it (SELECT ... FOR UPDATE), so no other write slips in between check and write:

    @router.patch("/{id}", response_model=ThingRead, responses=CONDITIONAL_WRITE_RESPONSES)
    async def update_thing(id: int, body: ThingUpdate, session: SessionDep, conditional: ConditionalWrite):
        thing = await service.get_thing(session, id, lock=True)
        conditional.check(ThingRead.model_validate(thing))
        return conditional.respond(ThingRead.model_validate(await service.update_thing(session, thing, body)))
"""

import hashlib
import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Header, Response
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PreconditionFailed, problem_responses

ETAG_HEADER = {
    "ETag": {
        "description": "The document's strong entity tag, for If-None-Match and If-Match.",
        "schema": {"type": "string"},
    }
}
CONDITIONAL_GET_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"headers": ETAG_HEADER},
    304: {"description": "Not modified: the document still has the tag sent in If-None-Match.", "headers": ETAG_HEADER},
}
CONDITIONAL_WRITE_RESPONSES: dict[int | str, dict[str, Any]] = {200: {"headers": ETAG_HEADER}, **problem_responses(412)}
PATCH_RESPONSES: dict[int | str, dict[str, Any]] = {
    **CONDITIONAL_WRITE_RESPONSES,
    409: {
        **problem_responses(409)[409],
        "description": "The PATCH is valid alone but conflicts with the stored document (a rule between a field "
        "sent and one stored, or state the document keeps): `errors` names the field. Read it again "
        "(app/core/patching.py).",
    },
}
"""A PATCH's responses where a rule reads stored fields: 412 for a stale If-Match, 409 for a conflict with them."""


def etag_of(document: BaseModel | dict | list) -> str:
    """The strong ETag of a document: a hash of its canonical JSON (sorted keys, no whitespace)."""
    canonical = json.dumps(jsonable_encoder(document), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return '"' + hashlib.sha256(canonical.encode()).hexdigest()[:32] + '"'


GZIP_SUFFIX = "-gzip"


def coded_etag(etag: str) -> str:
    """The strong tag of the gzipped representation: `"abc"` -> `"abc-gzip"`. A weak tag (W/) stays as it is: it
    already says only that the content is equivalent."""
    if etag.startswith('"') and etag.endswith('"') and len(etag) >= 2 and not etag.endswith(GZIP_SUFFIX + '"'):
        return etag[:-1] + GZIP_SUFFIX + '"'
    return etag


def _document_tag(tag: str) -> str:
    """The document's own tag of a tag a client sent: the gzip form names the same document."""
    if tag.endswith(GZIP_SUFFIX + '"'):
        return tag[: -len(GZIP_SUFFIX) - 1] + '"'
    return tag


def _tags(header: str) -> list[str]:
    return [tag.strip() for tag in header.split(",") if tag.strip()]


def matching_if_none_match(header: str | None, etag: str) -> str | None:
    """The tag of If-None-Match that shows the client's copy is current (RFC 9110 weak comparison: W/ ignored;
    the identity or the gzip form of `etag`, or `*`), or None."""
    if header is None:
        return None
    for tag in _tags(header):
        if tag == "*" or _document_tag(tag.removeprefix("W/")) == etag:
            return tag
    return None


def matches_if_none_match(header: str | None, etag: str) -> bool:
    return matching_if_none_match(header, etag) is not None


def matches_if_match(header: str | None, etag: str) -> bool:
    """RFC 9110 strong comparison: a weak tag never matches; the identity or the gzip form of `etag` does. No
    header: the write applies."""
    if header is None:
        return True
    return any(tag == "*" or (not tag.startswith("W/") and _document_tag(tag) == etag) for tag in _tags(header))


@dataclass
class ConditionalRequest:
    response: Response
    if_none_match: str | None = None
    if_match: str | None = None

    def respond(self, document: BaseModel):
        """The document with its ETag; for a GET whose If-None-Match holds its tag, a 304 with no body."""
        tag = etag_of(document)
        held = matching_if_none_match(self.if_none_match, tag)
        if held is not None:  # the tag of the representation the client holds: gzipped or not
            held_gzip = held.removeprefix("W/").endswith(GZIP_SUFFIX + '"')
            return Response(status_code=304, headers={"ETag": coded_etag(tag) if held_gzip else tag})
        self.response.headers["ETag"] = tag
        return document

    def check(self, current: BaseModel) -> None:
        """412 unless If-Match is absent or names the current document's tag (read it locked, in the write's
        transaction)."""
        tag = etag_of(current)
        if not matches_if_match(self.if_match, tag):
            raise PreconditionFailed(
                "The document changed since you read it (If-Match does not hold its "
                "current ETag): read it again and reapply your change.",
                headers={"ETag": tag},
                current_etag=tag,
            )


def _conditional_get(
    response: Response,
    if_none_match: Annotated[
        str | None, Header(max_length=2000, description="ETags of copies you hold: 304 when one is current.")
    ] = None,
) -> ConditionalRequest:
    return ConditionalRequest(response, if_none_match=if_none_match)


def _conditional_write(
    response: Response,
    if_match: Annotated[
        str | None,
        Header(
            max_length=2000,
            description="The ETag you read: the write applies only if the document still has it "
            "(412 otherwise). Optional: without it the write applies.",
        ),
    ] = None,
) -> ConditionalRequest:
    return ConditionalRequest(response, if_match=if_match)


ConditionalGet = Annotated[ConditionalRequest, Depends(_conditional_get)]
ConditionalWrite = Annotated[ConditionalRequest, Depends(_conditional_write)]


class GZipWithCodedETags:
    """Starlette's GZipMiddleware (answers of `minimum_size` bytes and more, for clients that accept gzip), with the
    strong ETag of a gzipped answer made its own (`coded_etag`): equal strong tags must mean equal bytes."""

    def __init__(self, app: ASGIApp, minimum_size: int, compresslevel: int) -> None:
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size, compresslevel=compresslevel)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.gzip(scope, receive, send)
            return

        async def send_coded(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers") or []
                if (b"content-encoding", b"gzip") in headers:
                    message["headers"] = [
                        (name, coded_etag(value.decode("latin-1")).encode("latin-1") if name == b"etag" else value)
                        for name, value in headers
                    ]
            await send(message)

        await self.gzip(scope, receive, send_coded)
