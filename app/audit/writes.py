"""Admin writes to one document (a product, a benefit, the worklist rules...): the document read locked, If-Match
checked against it, the change, its audit event by the calling key, and the new ETag. The conditional part is
app/core/etag.py's ConditionalWrite; the audit is here because the core imports no domain.

    @router.patch("/{code}", response_model=ThingRead, responses=CONDITIONAL_WRITE_RESPONSES)
    async def update_thing(code: CodePath, body: ThingUpdate, session: SessionDep, write: AuditedWrite):
        before = ThingRead.model_validate(await service.get_thing(session, code, lock=True))
        return await write.update("thing.update", "thing", code, before, lambda: service.update_thing(...))
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, TypeVar

from fastapi import Depends, Request, Response, status
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record_change
from app.core.db import SessionDep
from app.core.etag import ConditionalRequest, ConditionalWrite

Document = TypeVar("Document", bound=BaseModel)


@dataclass
class AuditedWriteRequest:
    """One admin write's session, request (the calling key is the audit's actor) and If-Match."""

    session: AsyncSession
    request: Request
    conditional: ConditionalRequest

    async def update(
        self,
        action: str,
        entity: str,
        key: str | int,
        before: Document | None,
        change: Callable[[], Awaitable[Document]],
    ) -> Document | Response:
        """412 unless If-Match is absent or holds `before`'s tag (None: no document yet, nothing to match), then
        `change`, audited; the changed document with its ETag."""
        after = await self._apply(action, entity, key, before, change)
        return self.conditional.respond(after)

    async def delete(
        self, action: str, entity: str, key: str | int, before: BaseModel, change: Callable[[], Awaitable[object]]
    ) -> Response:
        """412 unless If-Match is absent or holds `before`'s tag, then `change` (the deletion), audited; 204."""
        await self._apply(action, entity, key, before, change, deletes=True)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    async def _apply(self, action, entity, key, before, change, *, deletes: bool = False):
        if before is not None:
            self.conditional.check(before)
        after = await change()
        await record_change(self.session, self.request, action, entity, key, before, None if deletes else after)
        return after


def _audited_write(session: SessionDep, request: Request, conditional: ConditionalWrite) -> AuditedWriteRequest:
    return AuditedWriteRequest(session, request, conditional)


AuditedWrite = Annotated[AuditedWriteRequest, Depends(_audited_write)]
