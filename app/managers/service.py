"""Managers (create, read, change, list), the assignment run, a customer's manager and its manual reassignment,
the coverage report and the contact log; the session is flushed, never committed."""

from datetime import UTC, datetime

from sqlalchemy import delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from app.benefits.queries import customer_id_of
from app.core.db import unique_or_raise
from app.core.errors import InvalidInput
from app.core.pagination import PageRequest, keyset
from app.customers.models import Customer
from app.managers import queries
from app.managers.errors import (
    AssignmentRunNotFound,
    CapacityBelowLoad,
    ContactNotFound,
    ManagerFull,
    ManagerIdTaken,
    ManagerNotFound,
    NotServed,
)
from app.managers.models import (
    ManagerAssignment,
    ManagerAssignmentChange,
    ManagerAssignmentRun,
    ManagerContact,
    ManagerTask,
    RelationshipManager,
)
from app.managers.schemas import (
    AssignmentChange,
    AssignmentRunRead,
    ContactCreate,
    ContactRead,
    CoverageReport,
    CustomerManager,
    ManagerCoverage,
    ManagerCreate,
    ManagerRead,
    ManagerUpdate,
    Reassignment,
    ServedTiers,
    TierCoverage,
)
from app.tiering.models import TierPolicy, TierPolicyVersion

ERASED_REASON = "Erased with the customer."


def read(manager: RelationshipManager) -> ManagerRead:
    return ManagerRead(
        manager_id=manager.manager_id,
        name=manager.name,
        team=manager.team,
        serves=ServedTiers(policy_key=manager.policy_key, tiers=manager.tiers),
        capacity=manager.capacity,
        is_active=manager.is_active,
        created_at=manager.created_at,
        updated_at=manager.updated_at,
    )


async def _check_serves(session: AsyncSession, serves: ServedTiers, pointer: str) -> None:
    """The policy exists and has every tier in some version (422 at /serves/...)."""
    rows = (
        await session.execute(
            select(TierPolicyVersion.tiers)
            .join(TierPolicy, TierPolicy.id == TierPolicyVersion.policy_id)
            .where(TierPolicy.key == serves.policy_key)
        )
    ).all()
    if not rows:
        raise InvalidInput(f"{pointer}/policy_key", f"no tier policy '{serves.policy_key}'")
    known = {tier["code"] for (tiers,) in rows for tier in tiers}
    for i, tier in enumerate(serves.tiers):
        if tier not in known:
            raise InvalidInput(f"{pointer}/tiers/{i}", f"policy '{serves.policy_key}' has no tier '{tier}'")
    if len(set(serves.tiers)) != len(serves.tiers):
        raise InvalidInput(f"{pointer}/tiers", "a tier twice")


async def find_manager(session: AsyncSession, manager_id: str, *, lock: bool = False) -> RelationshipManager | None:
    query = select(RelationshipManager).where(RelationshipManager.manager_id == manager_id)
    return await session.scalar(query.with_for_update() if lock else query)


async def get_manager(session: AsyncSession, manager_id: str, *, lock: bool = False) -> RelationshipManager:
    manager = await find_manager(session, manager_id, lock=lock)
    if manager is None:
        raise ManagerNotFound(manager_id)
    return manager


async def load_of(session: AsyncSession, manager: RelationshipManager) -> int:
    return await session.scalar(
        select(func.count()).select_from(ManagerAssignment).where(ManagerAssignment.manager_id == manager.id)
    )


async def create_manager(session: AsyncSession, body: ManagerCreate) -> ManagerRead:
    await _check_serves(session, body.serves, "/serves")
    if await find_manager(session, body.manager_id) is not None:
        raise ManagerIdTaken(body.manager_id)
    manager = RelationshipManager(
        manager_id=body.manager_id,
        name=body.name,
        team=body.team,
        policy_key=body.serves.policy_key,
        tiers=list(body.serves.tiers),
        capacity=body.capacity,
    )
    async with unique_or_raise(session, ManagerIdTaken(body.manager_id)):
        session.add(manager)
        await session.flush()
    await session.refresh(manager)
    return read(manager)


async def update_manager(session: AsyncSession, manager: RelationshipManager, body: ManagerUpdate) -> ManagerRead:
    changes = body.model_dump(exclude_unset=True)
    if "serves" in changes:  # null is refused by ManagerUpdate, as its schema says
        await _check_serves(session, body.serves, "/serves")
        manager.policy_key = body.serves.policy_key
        manager.tiers = list(body.serves.tiers)
    if "capacity" in changes:
        # Taken under the assignment lock, so no run or reassignment adds a customer between count and change.
        await session.execute(queries.LOCK)
        load = await load_of(session, manager)
        if body.capacity < load:
            raise CapacityBelowLoad(manager.manager_id, load)
        manager.capacity = body.capacity
    for name in ("name", "team", "is_active"):
        if name in changes:
            setattr(manager, name, changes[name])
    if changes:
        manager.updated_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(manager)
    return read(manager)


async def list_managers(
    session: AsyncSession, page: PageRequest, *, team: str | None = None, policy_key: str | None = None
) -> list[RelationshipManager]:
    query = select(RelationshipManager)
    if team is not None:
        query = query.where(RelationshipManager.team == team)
    if policy_key is not None:
        query = query.where(RelationshipManager.policy_key == policy_key)
    return list((await session.scalars(keyset(query, RelationshipManager.id, page))).all())


# Assignment


async def run_assignment(session: AsyncSession, actor: str) -> AssignmentRunRead:
    """Assign the whole population, set-based: release, follow tier moves, fill each served tier's free slots."""
    await session.execute(queries.LOCK)
    run = ManagerAssignmentRun(actor=actor)
    session.add(run)
    await session.flush()
    params = {"run_id": run.id, "actor": actor}
    released = (await session.execute(queries.RELEASE, params)).rowcount
    await session.execute(queries.FOLLOW_TIER)
    assigned = 0
    for policy_key, tier, _ in (await session.execute(queries.POOLS)).all():
        assigned += (
            await session.execute(queries.ASSIGN_POOL, {**params, "policy_key": policy_key, "tier": tier})
        ).rowcount
    total = await session.scalar(select(func.count()).select_from(ManagerAssignment))
    run.released, run.assigned, run.kept = released, assigned, total - assigned
    run.unassigned = await session.scalar(queries.UNASSIGNED)
    run.finished_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(run)
    return AssignmentRunRead.model_validate(run, from_attributes=True)


async def get_run(session: AsyncSession, run_id: int) -> AssignmentRunRead:
    run = await session.get(ManagerAssignmentRun, run_id)
    if run is None:
        raise AssignmentRunNotFound(run_id)
    return AssignmentRunRead.model_validate(run, from_attributes=True)


async def list_runs(session: AsyncSession, page: PageRequest) -> list[AssignmentRunRead]:
    rows = await session.scalars(keyset(select(ManagerAssignmentRun), ManagerAssignmentRun.id, page, descending=True))
    return [AssignmentRunRead.model_validate(run, from_attributes=True) for run in rows]


async def customer_manager(session: AsyncSession, external_id: str) -> CustomerManager:
    customer_id = await customer_id_of(session, external_id)
    row = (
        await session.execute(
            select(ManagerAssignment, RelationshipManager)
            .join(RelationshipManager, RelationshipManager.id == ManagerAssignment.manager_id)
            .where(ManagerAssignment.customer_id == customer_id)
        )
    ).first()
    if row is None:
        return CustomerManager(customer_id=external_id, manager=None)
    assignment, manager = row
    return CustomerManager(
        customer_id=external_id,
        manager=read(manager),
        policy_key=assignment.policy_key,
        tier=assignment.tier,
        source=assignment.source,
        assigned_at=assignment.assigned_at,
    )


async def reassign(session: AsyncSession, external_id: str, body: Reassignment, actor: str) -> CustomerManager:
    """Give the customer another manager by hand, with a reason kept in the history. The manager must be active,
    serve a tier the customer holds and have room. Kept by later runs while the customer stays in those tiers."""
    customer_id = await customer_id_of(session, external_id)
    await session.execute(queries.LOCK)
    manager = await get_manager(session, body.manager_id)
    tier = None
    if manager.is_active:
        tier = await session.scalar(
            queries.SERVED_TIER,
            {"customer_id": customer_id, "policy_key": manager.policy_key, "tiers": manager.tiers},
        )
    if tier is None:
        raise NotServed(manager.manager_id)
    current = await session.get(ManagerAssignment, customer_id)
    previous = current.manager_id if current is not None else None
    if previous != manager.id and await load_of(session, manager) >= manager.capacity:
        raise ManagerFull(manager.manager_id, manager.capacity)
    now = datetime.now(UTC)
    if current is None:
        session.add(
            ManagerAssignment(
                customer_id=customer_id,
                manager_id=manager.id,
                policy_key=manager.policy_key,
                tier=tier,
                source="manual",
                assigned_at=now,
            )
        )
    else:
        current.manager_id, current.policy_key, current.tier = manager.id, manager.policy_key, tier
        current.source, current.assigned_at = "manual", now
    session.add(
        ManagerAssignmentChange(
            customer_id=customer_id,
            action="reassigned",
            manager_id=manager.id,
            previous_manager_id=previous,
            reason=body.reason,
            actor=actor,
            at=now,
        )
    )
    await session.flush()
    return await customer_manager(session, external_id)


async def history(session: AsyncSession, external_id: str, page: PageRequest) -> list[AssignmentChange]:
    """The customer's assignment history, newest first."""
    customer_id = await customer_id_of(session, external_id)
    new, old = aliased(RelationshipManager), aliased(RelationshipManager)
    query = (
        select(ManagerAssignmentChange, new.manager_id, old.manager_id)
        .outerjoin(new, new.id == ManagerAssignmentChange.manager_id)
        .outerjoin(old, old.id == ManagerAssignmentChange.previous_manager_id)
        .where(ManagerAssignmentChange.customer_id == customer_id)
    )
    rows = await session.execute(keyset(query, ManagerAssignmentChange.id, page, descending=True))
    return [
        AssignmentChange(
            id=change.id,
            customer_id=external_id,
            action=change.action,
            manager_id=manager_id,
            previous_manager_id=previous_id,
            run_id=change.run_id,
            reason=change.reason,
            actor=change.actor,
            at=change.at,
        )
        for change, manager_id, previous_id in rows
    ]


async def coverage(session: AsyncSession) -> CoverageReport:
    tiers = [
        TierCoverage(
            policy_key=row.policy_key,
            tier=row.tier,
            customers=row.customers,
            with_manager=row.with_manager,
            share=round(row.with_manager / row.customers, 4) if row.customers else 0.0,
        )
        for row in await session.execute(queries.TIER_COVERAGE)
    ]
    load = (
        select(ManagerAssignment.manager_id, func.count().label("n")).group_by(ManagerAssignment.manager_id).subquery()
    )
    rows = await session.execute(
        select(RelationshipManager, func.coalesce(load.c.n, 0))
        .outerjoin(load, load.c.manager_id == RelationshipManager.id)
        .order_by(RelationshipManager.manager_id)
    )
    managers = [
        ManagerCoverage(
            manager_id=m.manager_id,
            team=m.team,
            capacity=m.capacity,
            load=n,
            utilisation=round(n / m.capacity, 4) if m.capacity else 0.0,
        )
        for m, n in rows
    ]
    return CoverageReport(tiers=tiers, managers=managers)


# Contacts


def _contact(contact: ManagerContact, external_id: str, manager_id: str | None) -> ContactRead:
    return ContactRead(
        id=contact.id,
        customer_id=external_id,
        manager_id=manager_id,
        kind=contact.kind,
        channel=contact.channel,
        outcome=contact.outcome,
        note=contact.note,
        contacted_at=contact.contacted_at,
        recorded_by=contact.recorded_by,
    )


async def record_contact(session: AsyncSession, external_id: str, body: ContactCreate, actor: str) -> ContactRead:
    customer_id = await customer_id_of(session, external_id)
    if body.manager_id is not None:
        manager = await find_manager(session, body.manager_id)
        if manager is None:
            raise InvalidInput("/manager_id", f"no relationship manager '{body.manager_id}'")
    else:
        manager = await session.scalar(
            select(RelationshipManager)
            .join(ManagerAssignment, ManagerAssignment.manager_id == RelationshipManager.id)
            .where(ManagerAssignment.customer_id == customer_id)
        )
    now = datetime.now(UTC)
    if body.contacted_at is not None and body.contacted_at > now:
        raise InvalidInput("/contacted_at", "may not be in the future")
    contact = ManagerContact(
        customer_id=customer_id,
        manager_id=manager.id if manager is not None else None,
        kind=body.kind,
        channel=body.channel,
        outcome=body.outcome,
        note=body.note,
        contacted_at=body.contacted_at or now,
        recorded_by=actor,
    )
    session.add(contact)
    await session.flush()
    return _contact(contact, external_id, manager.manager_id if manager is not None else None)


async def list_customer_contacts(session: AsyncSession, external_id: str, page: PageRequest) -> list[ContactRead]:
    customer_id = await customer_id_of(session, external_id)
    query = (
        select(ManagerContact, RelationshipManager.manager_id)
        .outerjoin(RelationshipManager, RelationshipManager.id == ManagerContact.manager_id)
        .where(ManagerContact.customer_id == customer_id)
    )
    rows = await session.execute(keyset(query, ManagerContact.id, page, descending=True))
    return [_contact(contact, external_id, manager_id) for contact, manager_id in rows]


async def list_manager_contacts(session: AsyncSession, manager_id: str, page: PageRequest) -> list[ContactRead]:
    manager = await get_manager(session, manager_id)
    query = (
        select(ManagerContact, Customer.external_id)
        .join(Customer, Customer.id == ManagerContact.customer_id)
        .where(ManagerContact.manager_id == manager.id)
    )
    rows = await session.execute(keyset(query, ManagerContact.id, page, descending=True))
    return [_contact(contact, external_id, manager_id) for contact, external_id in rows]


async def erase_customer_managers(session: AsyncSession, customer_id: int) -> None:
    """Erasure: the customer leaves their manager; reassignment reasons, contact notes and task outcomes (free
    text that may quote them) and task reasons (which quote birthdays and balances) go. The history, contacts
    and tasks are kept, anonymous, for the managers' figures."""
    await session.execute(delete(ManagerAssignment).where(ManagerAssignment.customer_id == customer_id))
    await session.execute(
        update(ManagerAssignmentChange)
        .where(ManagerAssignmentChange.customer_id == customer_id, ManagerAssignmentChange.reason.is_not(None))
        .values(reason=None)
    )
    await session.execute(
        update(ManagerContact)
        .where(ManagerContact.customer_id == customer_id, ManagerContact.note.is_not(None))
        .values(note=None)
    )
    # Task reasons quote personal values (a birthday, an age, balances): only the kind and dates are kept.
    await session.execute(
        update(ManagerTask).where(ManagerTask.customer_id == customer_id).values(outcome=None, reason=ERASED_REASON)
    )


async def get_contact(session: AsyncSession, external_id: str, contact_id: int) -> ContactRead:
    customer_id = await customer_id_of(session, external_id)
    row = (
        await session.execute(
            select(ManagerContact, RelationshipManager.manager_id)
            .outerjoin(RelationshipManager, RelationshipManager.id == ManagerContact.manager_id)
            .where(ManagerContact.customer_id == customer_id, ManagerContact.id == contact_id)
        )
    ).first()
    if row is None:
        raise ContactNotFound(contact_id)
    return _contact(row[0], external_id, row[1])
