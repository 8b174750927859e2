"""A manager's worklist: tasks generated from data (a downgrade at risk, a contact cadence overdue per the tier's
cadence, and the kinds the worklist rules configure: care dates, complaints past their SLA, near-miss upgrades,
valuable customers gone quiet), each once per customer, kind and period, worked (done, snoozed, dismissed) with an
outcome, done with the contact that did it; a task belongs to the customer, so it moves with them to their next
manager. Contact cadences per tier."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import customer_of
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.pagination import PageRequest, keyset
from app.customers.models import Customer
from app.managers import near_miss, queries, quiet, task_queries
from app.managers.models import ContactCadence, ManagerAssignment, ManagerContact, ManagerTask
from app.managers.rules import get_rules
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
        contact_id=task.contact_id,
    )


async def generate(session: AsyncSession, manager, today: date) -> None:
    """Every kind's tasks for the manager's customers, set-based, each once (the kinds the rules leave off: none)."""
    params = {"manager_id": manager.id, "today": today}
    await session.execute(queries.AT_RISK_TASKS, {"manager_id": manager.id})
    await session.execute(queries.CADENCE_TASKS, params)
    rules = await get_rules(session)
    if rules.care is not None:
        care = rules.care
        if care.birthdays or care.anniversaries:
            await session.execute(
                task_queries.CARE_DATE_TASKS,
                {
                    **params,
                    "days_before": care.days_before,
                    "birthdays": care.birthdays,
                    "anniversaries": care.anniversaries,
                },
            )
        if care.holidays:
            await session.execute(task_queries.HOLIDAY_TASKS, {**params, "days_before": care.holiday_days_before})
    if rules.complaint_sla is not None:
        sla = rules.complaint_sla
        await session.execute(
            task_queries.COMPLAINT_TASKS, {**params, "days": sla.days, "by_category": json.dumps(sla.days_by_category)}
        )
    if rules.gone_quiet is not None:
        await quiet.generate(session, manager.id, rules.gone_quiet, today)
    if rules.near_miss is not None:
        await near_miss.generate(session, manager.id, manager.policy_key, Decimal(rules.near_miss.share), today)


async def worklist(session: AsyncSession, manager_id: str, page: PageRequest, today: date | None = None) -> list:
    """Today's tasks of the manager's customers: generated first (set-based, each once), then those open or whose
    snooze is over, oldest first."""
    manager = await get_manager(session, manager_id)
    today = today or datetime.now(UTC).date()
    await generate(session, manager, today)
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
    customer_id = await customer_of(session, ManagerTask, task_id)
    row = (
        await session.execute(
            select(ManagerTask, Customer.external_id)
            .join(Customer, Customer.id == ManagerTask.customer_id)
            .where(ManagerTask.customer_id == customer_id, ManagerTask.id == task_id)
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
    if body.contact is not None and body.state != "done":
        raise InvalidInput("/contact", "only with done")
    before = task.state
    now = datetime.now(UTC)
    task.state, task.outcome, task.snoozed_until = body.state, body.outcome, body.snoozed_until
    task.closed_by, task.closed_at = actor, now
    if body.contact is not None:
        manager_id = await session.scalar(
            select(ManagerAssignment.manager_id).where(ManagerAssignment.customer_id == task.customer_id)
        )
        contact = ManagerContact(
            customer_id=task.customer_id,
            manager_id=manager_id,
            kind=body.contact.kind,
            channel=body.contact.channel,
            outcome=body.contact.outcome,
            contacted_at=now,
            recorded_by=actor,
        )
        session.add(contact)
        await session.flush()
        task.contact_id = contact.id
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
