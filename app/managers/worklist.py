"""A manager's worklist: tasks generated from data (a downgrade at risk, a contact cadence overdue per the tier's
cadence, stored as data), each once per customer, kind and period, worked (done, snoozed, dismissed) with an
outcome; a task belongs to the customer, so it moves with them to their next manager. Contact cadences per tier."""

from datetime import UTC, date, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.pagination import PageRequest, keyset
from app.customers.models import Customer
from app.managers import queries
from app.managers.models import ContactCadence, ManagerAssignment, ManagerTask
from app.managers.schemas import CadenceRead, ServedTiers, TaskRead, TaskUpdate
from app.managers.service import _check_serves, get_manager


class TaskNotFound(NotFound):
    def __init__(self, task_id: int) -> None:
        super().__init__(f"No task with id {task_id}.", task_id=task_id)


class TaskClosed(Conflict):
    def __init__(self, task_id: int, state: str) -> None:
        super().__init__(f"Task {task_id} is {state} already.", code="task_closed", state=state)


def _read(task: ManagerTask, external_id: str) -> TaskRead:
    return TaskRead(
        id=task.id,
        customer_id=external_id,
        kind=task.kind,
        reason=task.reason,
        due_on=task.due_on,
        state=task.state,
        snoozed_until=task.snoozed_until,
        outcome=task.outcome,
        closed_by=task.closed_by,
        closed_at=task.closed_at,
    )


async def worklist(session: AsyncSession, manager_id: str, page: PageRequest, today: date | None = None) -> list:
    """Today's tasks of the manager's customers: generated first (set-based, each once), then those open or whose
    snooze is over, oldest first."""
    manager = await get_manager(session, manager_id)
    today = today or datetime.now(UTC).date()
    await session.execute(queries.AT_RISK_TASKS, {"manager_id": manager.id})
    await session.execute(queries.CADENCE_TASKS, {"manager_id": manager.id, "today": today})
    query = (
        select(ManagerTask, Customer.external_id)
        .join(ManagerAssignment, ManagerAssignment.customer_id == ManagerTask.customer_id)
        .join(Customer, Customer.id == ManagerTask.customer_id)
        .where(
            ManagerAssignment.manager_id == manager.id,
            (ManagerTask.state == "open") | ((ManagerTask.state == "snoozed") & (ManagerTask.snoozed_until <= today)),
        )
    )
    rows = await session.execute(keyset(query, ManagerTask.id, page))
    return [_read(task, external_id) for task, external_id in rows]


async def update_task(session: AsyncSession, task_id: int, body: TaskUpdate, actor: str) -> tuple[str, TaskRead]:
    """Close or snooze a task; its state before and the task after."""
    row = (
        await session.execute(
            select(ManagerTask, Customer.external_id)
            .join(Customer, Customer.id == ManagerTask.customer_id)
            .where(ManagerTask.id == task_id)
            .with_for_update(of=ManagerTask)
        )
    ).first()
    if row is None:
        raise TaskNotFound(task_id)
    task, external_id = row
    if task.state in ("done", "dismissed"):
        raise TaskClosed(task_id, task.state)
    today = datetime.now(UTC).date()
    if body.state == "snoozed":
        if body.snoozed_until is None or body.snoozed_until <= today:
            raise InvalidInput("/snoozed_until", "with snoozed: a day after today")
    elif body.snoozed_until is not None:
        raise InvalidInput("/snoozed_until", "only with snoozed")
    before = task.state
    task.state, task.outcome, task.snoozed_until = body.state, body.outcome, body.snoozed_until
    task.closed_by, task.closed_at = actor, datetime.now(UTC)
    await session.flush()
    return before, _read(task, external_id)


async def list_cadences(session: AsyncSession, page: PageRequest) -> list[CadenceRead]:
    rows = await session.scalars(select(ContactCadence).order_by(ContactCadence.policy_key, ContactCadence.tier))
    return [CadenceRead.model_validate(row, from_attributes=True) for row in rows]


async def set_cadence(session: AsyncSession, policy_key: str, tier: str, days: int) -> tuple[int | None, CadenceRead]:
    """Set a tier's cadence; its days before (None: new) and the cadence after."""
    try:
        await _check_serves(session, ServedTiers(policy_key=policy_key, tiers=[tier]), "")
    except InvalidInput as error:
        parameter = "policy_key" if error.errors[0]["pointer"] == "/policy_key" else "tier"
        raise InvalidInput(parameter, error.errors[0]["detail"], location="path") from None
    before = await session.scalar(
        select(ContactCadence.days).where(ContactCadence.policy_key == policy_key, ContactCadence.tier == tier)
    )
    now = datetime.now(UTC)
    statement = insert(ContactCadence).values(policy_key=policy_key, tier=tier, days=days, updated_at=now)
    await session.execute(
        statement.on_conflict_do_update(index_elements=["policy_key", "tier"], set_={"days": days, "updated_at": now})
    )
    return before, CadenceRead(policy_key=policy_key, tier=tier, days=days, updated_at=now)
