"""Complaints: opened once per (customer, event_id), moved through their lifecycle under the complaint's lock,
each move kept in its history and folded into the customer's satisfaction summary (open count, resolution days) in
the same statement; complaint.status_changed webhook events. Descriptions and notes are the customer's words: never
logged, redacted by an erasure (app.feedback.service.erase_customer_words)."""

from datetime import datetime

from sqlalchemy import Row, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import customer_of
from app.core.pagination import PageRequest
from app.customers.models import Customer
from app.feedback.errors import ComplaintNotFound, InvalidComplaintTransition
from app.feedback.models import Complaint, ComplaintTransition
from app.feedback.schemas import ComplaintIn
from app.feedback.service import locked_customer_id, rows_with_customer
from app.webhooks import outbox

ACTIVE_STATUSES = frozenset({"open", "in_progress"})
ALLOWED_MOVES: dict[str, tuple[str, ...]] = {
    "open": ("in_progress", "resolved"),
    "in_progress": ("resolved", "open"),
    "resolved": ("closed", "open"),
    "closed": ("open",),
}
"""The complaint lifecycle: open -> in_progress -> resolved -> closed, resolution at first contact, and reopening
(back to open) from any later status."""

_OPEN_COMPLAINT = text("""
WITH inserted AS (
    INSERT INTO complaint (customer_id, event_id, category, channel, description, status, opened_at)
    VALUES (:customer_id, :event_id, :category, :channel, :description, 'open',
            coalesce(CAST(:opened_at AS timestamptz), now()))
    ON CONFLICT (customer_id, event_id) DO NOTHING
    RETURNING id, customer_id, opened_at
), history AS (
    INSERT INTO complaint_transition (customer_id, complaint_id, from_status, to_status, actor, note, at)
    SELECT customer_id, id, NULL, 'open', CAST(:actor AS text), NULL, opened_at FROM inserted
), summary AS (
    INSERT INTO customer_satisfaction AS cs (customer_id, open_complaints)
    SELECT customer_id, 1 FROM inserted
    ON CONFLICT (customer_id) DO UPDATE SET open_complaints = cs.open_complaints + 1, updated_at = now()
)
SELECT id, opened_at FROM inserted
""")

# One move of a locked complaint: its status, its history, and the summary's deltas (open count; resolutions and
# their days, taken back when a resolved or closed complaint is reopened, so each complaint counts once).
_MOVE_COMPLAINT = text("""
WITH moved AS (
    UPDATE complaint SET status = CAST(:to_status AS text), updated_at = now(),
        resolved_at = CASE WHEN CAST(:to_status AS text) = 'resolved' THEN now()
                           WHEN CAST(:to_status AS text) = 'open' THEN NULL ELSE resolved_at END
    WHERE customer_id = :customer_id AND id = :complaint_id
    RETURNING customer_id, id
), history AS (
    INSERT INTO complaint_transition (customer_id, complaint_id, from_status, to_status, actor, note, at)
    SELECT customer_id, id, CAST(:from_status AS text), CAST(:to_status AS text), CAST(:actor AS text),
           CAST(:note AS text), now()
    FROM moved
)
INSERT INTO customer_satisfaction AS cs (customer_id, open_complaints, resolved_count, resolve_days_sum)
SELECT CAST(:customer_id AS bigint), CAST(:open_delta AS int), CAST(:resolved_delta AS int),
       CASE WHEN CAST(:resolved_delta AS int) > 0
            THEN round(greatest(extract(epoch FROM now() - CAST(:opened_at AS timestamptz)), 0) / 86400, 4)
            WHEN CAST(:resolved_delta AS int) < 0
            THEN -round(greatest(extract(epoch FROM CAST(:resolved_at AS timestamptz)
                                                    - CAST(:opened_at AS timestamptz)), 0) / 86400, 4)
            ELSE 0 END
ON CONFLICT (customer_id) DO UPDATE SET
    open_complaints = cs.open_complaints + excluded.open_complaints,
    resolved_count = cs.resolved_count + excluded.resolved_count,
    resolve_days_sum = cs.resolve_days_sum + excluded.resolve_days_sum, updated_at = now()
RETURNING now() AS at
""")


async def open_complaint(session: AsyncSession, body: ComplaintIn, actor: str) -> tuple[int, int, bool]:
    """Open a complaint; (its id, customer id, True when new). A retry returns the stored complaint."""
    customer_id = await locked_customer_id(session, body.customer_id)
    opened = (
        await session.execute(
            _OPEN_COMPLAINT, {"customer_id": customer_id, "actor": actor, **body.model_dump(exclude={"customer_id"})}
        )
    ).one_or_none()
    if opened is not None:
        await _emit_status_changed(
            session, opened.id, customer_id, body.customer_id, body.category, None, "open", opened.opened_at
        )
        return opened.id, customer_id, True
    existing = await session.scalar(
        select(Complaint.id).where(Complaint.customer_id == customer_id, Complaint.event_id == body.event_id)
    )
    return existing, customer_id, False


async def move_complaint(session: AsyncSession, complaint_id: int, to_status: str, note: str | None, actor: str) -> int:
    """Move a complaint to another status (409 when the lifecycle does not allow it); returns its customer id."""
    customer_id = await customer_of(session, Complaint, complaint_id)
    complaint = (
        await session.execute(
            select(
                Complaint.customer_id,
                Complaint.status,
                Complaint.opened_at,
                Complaint.resolved_at,
                Complaint.category,
                Customer.external_id,
            )
            .join(Customer, Customer.id == Complaint.customer_id)
            .where(Complaint.customer_id == customer_id, Complaint.id == complaint_id)
            .with_for_update(of=Complaint)
        )
    ).one_or_none()
    if complaint is None:
        raise ComplaintNotFound(complaint_id)
    allowed = ALLOWED_MOVES[complaint.status]
    if to_status not in allowed:
        raise InvalidComplaintTransition(complaint_id, complaint.status, to_status, list(allowed))
    reopened_resolution = to_status == "open" and complaint.resolved_at is not None
    moved_at = await session.scalar(
        _MOVE_COMPLAINT,
        {
            "complaint_id": complaint_id,
            "customer_id": complaint.customer_id,
            "from_status": complaint.status,
            "to_status": to_status,
            "actor": actor,
            "note": note,
            "opened_at": complaint.opened_at,
            "resolved_at": complaint.resolved_at,
            "open_delta": (to_status in ACTIVE_STATUSES) - (complaint.status in ACTIVE_STATUSES),
            "resolved_delta": 1 if to_status == "resolved" else -1 if reopened_resolution else 0,
        },
    )
    await _emit_status_changed(
        session,
        complaint_id,
        complaint.customer_id,
        complaint.external_id,
        complaint.category,
        complaint.status,
        to_status,
        moved_at,
    )
    return complaint.customer_id


async def _emit_status_changed(
    session: AsyncSession,
    complaint_id: int,
    customer_id: int,
    external_id: str,
    category: str,
    from_status: str | None,
    to_status: str,
    at: datetime,
) -> None:
    """complaint.status_changed, in the transaction of the move (never the note or description: free text)."""
    await outbox.emit(
        session,
        "complaint.status_changed",
        {
            "complaint_id": complaint_id,
            "customer_id": external_id,
            "category": category,
            "from_status": from_status,
            "to_status": to_status,
            "at": at,
        },
        customer_id=customer_id,
    )


async def get_complaint(session: AsyncSession, complaint_id: int) -> tuple[Complaint, str, list[ComplaintTransition]]:
    """A complaint, its customer's external id and its history, oldest first."""
    row = (
        await session.execute(
            select(Complaint, Customer.external_id)
            .join(Customer, Customer.id == Complaint.customer_id)
            .where(Complaint.id == complaint_id)
            .execution_options(populate_existing=True)
        )
    ).one_or_none()
    if row is None:
        raise ComplaintNotFound(complaint_id)
    history = list(
        await session.scalars(
            select(ComplaintTransition)
            .where(
                ComplaintTransition.customer_id == row[0].customer_id,
                ComplaintTransition.complaint_id == complaint_id,
            )
            .order_by(ComplaintTransition.id)
        )
    )
    return row[0], row[1], history


async def list_complaints(
    session: AsyncSession,
    page: PageRequest,
    *,
    customer: str | None,
    status: str | None,
    category: str | None,
    opened_from: datetime | None,
    opened_to: datetime | None,
) -> list[Row]:
    """(complaint, external id) rows in id order, limit + 1 of them."""
    conditions = []
    if status is not None:
        conditions.append(Complaint.status == status)
    if category is not None:
        conditions.append(Complaint.category == category)
    if opened_from is not None:
        conditions.append(Complaint.opened_at >= opened_from)
    if opened_to is not None:
        conditions.append(Complaint.opened_at < opened_to)
    return await rows_with_customer(session, Complaint, page, customer, *conditions)
