"""The HTTP plumbing communities' and activities' routes share: the audit record of an admin write, the PATCH
(locked read, If-Match, change, audit, ETag) and the invitation batch (invite, audit, the batch result). Each
router keeps its own routes, with their paths, summaries and descriptions; their bodies call these."""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record_change
from app.audit.writes import AuditedWriteRequest
from app.engagement import programmes
from app.engagement.schemas.common import InvitationBatch, InvitationBatchResult

Read = TypeVar("Read", bound=BaseModel)


async def audit(
    session: AsyncSession,
    request: Request,
    kind: programmes.ProgrammeKind,
    action: str,
    key: str,
    before: BaseModel | None,
    after: BaseModel | dict[str, Any] | None,
) -> None:
    """One audit event of an admin write to a programme (action `<kind>.<action>`), by the calling key."""
    await record_change(session, request, f"{kind.name}.{action}", kind.name, key, before, after)


async def change(
    session: AsyncSession,
    write: AuditedWriteRequest,
    kind: programmes.ProgrammeKind,
    key: str,
    read: type[Read],
    update: Callable[[AsyncSession, Any, BaseModel], Awaitable[Any]],
    body: BaseModel,
) -> Read:
    """PATCH a programme: read it locked, check If-Match against it, `update` it with `body` (the kind's update),
    audit before and after."""
    programme = await programmes.get(session, kind, key, lock=True)

    async def apply() -> Read:
        return read.model_validate(await update(session, programme, body))

    return await write.update(f"{kind.name}.update", kind.name, key, read.model_validate(programme), apply)


async def invite(
    session: AsyncSession,
    request: Request,
    kind: programmes.ProgrammeKind,
    key: str,
    body: InvitationBatch,
    invite_to: Callable[[AsyncSession, Any, list[str], str], Awaitable[list[dict[str, Any]]]],
) -> InvitationBatchResult:
    """Invite a batch to the programme (`invite_to`: the kind's invite), audit how many, list each outcome."""
    programme = await programmes.get(session, kind, key)
    results = await invite_to(session, programme, body.customer_ids, body.channel)
    invited = sum(1 for r in results if r["outcome"] == "invited")
    await audit(session, request, kind, "invite", key, None, {"channel": body.channel, "invited": invited})
    return InvitationBatchResult(invited=invited, skipped=len(results) - invited, results=results)
