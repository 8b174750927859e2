"""HTTP routes for relationship managers: the managers (admin writes, audited), assignment runs, a customer's
manager with manual reassignment and its history, the coverage report and the contact log."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from app.audit import service as audit_service
from app.audit.writes import AuditedWrite
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.etag import CONDITIONAL_GET_RESPONSES, PATCH_RESPONSES, ConditionalGet
from app.core.idempotency import creates
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.strict import BIGINT_MAX, NO_NUL_PATTERN, ParamInteger
from app.customers.schemas import ExternalIdPath
from app.managers import service, worklist
from app.managers.schemas import (
    AssignmentChange,
    AssignmentRunCreate,
    AssignmentRunRead,
    CadenceRead,
    CadenceSet,
    ContactCreate,
    ContactRead,
    CoverageReport,
    CustomerManager,
    ManagerCreate,
    ManagerRead,
    ManagerUpdate,
    Reassignment,
    TaskRead,
    TaskUpdate,
)

router = APIRouter(prefix="/v1", tags=["relationship-managers"], responses=problem_responses(401, 403))

ManagerIdPath = Annotated[
    str,
    Path(
        alias="manager_id",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,39}$",
        description="The bank's id for the manager.",
        examples=["RM001"],
    ),
]
RunId = Annotated[ParamInteger(1, BIGINT_MAX), Path(description="The run's id.", examples=[1])]


@creates(
    router,
    "/relationship-managers",
    summary="Add a relationship manager",
    location="/v1/relationship-managers/{manager_id}",
    audit=audit_service.created("manager.create", "relationship_manager", "manager_id"),
    response_model=ManagerRead,
    dependencies=[require_scope(Scope.MANAGERS_WRITE)],
    responses=problem_responses(409, 422),
)
async def create_manager(body: ManagerCreate, session: SessionDep) -> ManagerRead:
    """A manager serving tiers of one policy (e.g. wealth: private, wealth) with a capacity in customers. The next
    assignment run gives them customers."""
    return await service.create_manager(session, body)


@router.get(
    "/relationship-managers",
    summary="List relationship managers",
    response_model=Page[ManagerRead],
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(422),
)
async def list_managers(
    session: SessionDep,
    page: PageParams,
    team: Annotated[str | None, Query(max_length=100, pattern=NO_NUL_PATTERN, description="Only this team.")] = None,
    policy_key: Annotated[
        str | None, Query(max_length=40, pattern=NO_NUL_PATTERN, description="Only managers serving this policy.")
    ] = None,
) -> Page[ManagerRead]:
    """Managers in creation order; follow `next_cursor`."""
    rows = await service.list_managers(session, page, team=team, policy_key=policy_key)
    return Page[ManagerRead].of(rows, page, service.read)


@router.get(
    "/relationship-managers/{manager_id}",
    summary="Get a relationship manager",
    response_model=ManagerRead,
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(404, 422)},
)
async def get_manager(manager_id: ManagerIdPath, session: SessionDep, conditional: ConditionalGet) -> ManagerRead:
    """One manager, with its ETag."""
    return conditional.respond(service.read(await service.get_manager(session, manager_id)))


@router.patch(
    "/relationship-managers/{manager_id}",
    summary="Change a relationship manager",
    response_model=ManagerRead,
    dependencies=[require_scope(Scope.MANAGERS_WRITE)],
    responses={**PATCH_RESPONSES, **problem_responses(404, 422)},
)
async def update_manager(
    manager_id: ManagerIdPath,
    body: ManagerUpdate,
    session: SessionDep,
    write: AuditedWrite,
) -> ManagerRead:
    """Change some fields. Capacity below the current load is a 409; served tiers changed or `is_active: false`
    release, at the next run, the customers the manager no longer serves. With If-Match, only if unchanged."""
    manager = await service.get_manager(session, manager_id, lock=True)
    before = service.read(manager)
    return await write.update(
        "manager.update",
        "relationship_manager",
        manager_id,
        before,
        lambda: service.update_manager(session, manager, body),
    )


@router.get(
    "/relationship-managers/{manager_id}/contacts",
    summary="List a manager's contacts",
    response_model=Page[ContactRead],
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(404, 422),
)
async def list_manager_contacts(manager_id: ManagerIdPath, session: SessionDep, page: PageParams) -> Page[ContactRead]:
    """The contacts the manager made, newest first; follow `next_cursor`."""
    return Page[ContactRead].of(await service.list_manager_contacts(session, manager_id, page), page)


@creates(
    router,
    "/manager-assignment-runs",
    summary="Run the assignment of customers to managers",
    location="/v1/manager-assignment-runs/{id}",
    audit=audit_service.created("manager.assignment_run", "manager_assignment_run", "id"),
    response_model=AssignmentRunRead,
    dependencies=[require_scope(Scope.MANAGERS_WRITE)],
    responses=problem_responses(422),
)
async def run_assignment(body: AssignmentRunCreate, session: SessionDep, request: Request) -> AssignmentRunRead:
    """Over the whole population, set-based, in one transaction: customers no longer in a tier their manager serves
    (their effective tier, so only after the policy's downgrade grace) are released; the others keep their manager;
    customers in a served tier without a manager are given one with room, highest tiers first, filling managers
    evenly by capacity and never beyond it. The body may be `{}`."""
    return await service.run_assignment(session, request.state.principal.name)


@router.get(
    "/manager-assignment-runs",
    summary="List assignment runs",
    response_model=Page[AssignmentRunRead],
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(422),
)
async def list_runs(session: SessionDep, page: PageParams) -> Page[AssignmentRunRead]:
    """Runs, newest first."""
    return Page[AssignmentRunRead].of(await service.list_runs(session, page), page)


@router.get(
    "/manager-assignment-runs/{run_id}",
    summary="Get an assignment run",
    response_model=AssignmentRunRead,
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(404, 422),
)
async def get_run(run_id: RunId, session: SessionDep) -> AssignmentRunRead:
    """What a run did: kept, released, assigned, and eligible customers left without a manager."""
    return await service.get_run(session, run_id)


@router.get(
    "/customers/{customer_id}/relationship-manager",
    summary="Get a customer's relationship manager",
    response_model=CustomerManager,
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(404, 422),
)
async def get_customer_manager(customer_id: ExternalIdPath, session: SessionDep) -> CustomerManager:
    """The customer's manager now (null when nobody serves them), the tier they are served for, and how."""
    return await service.customer_manager(session, customer_id)


@router.put(
    "/customers/{customer_id}/relationship-manager",
    summary="Reassign a customer's relationship manager",
    response_model=CustomerManager,
    dependencies=[require_scope(Scope.MANAGERS_WRITE)],
    responses=problem_responses(404, 409, 422),
)
async def reassign(
    customer_id: ExternalIdPath, body: Reassignment, session: SessionDep, request: Request
) -> CustomerManager:
    """Give the customer another manager by hand, with a reason (kept in the history). The manager must be active,
    serve a tier the customer holds (409 `not_served`) and have room (409 `manager_full`). Runs keep it while the
    customer stays in the manager's tiers."""
    before = await service.customer_manager(session, customer_id)
    after = await service.reassign(session, customer_id, body, request.state.principal.name)
    # Audited by the manager ids, the tier and the source; the reason (free text) is in the history only.
    snapshot = {"include": {"manager": {"manager_id"}, "tier": True, "source": True}}
    await audit_service.record(
        session,
        request.state.principal.name,
        "manager.reassign",
        "manager_assignment",
        (await service.customer_id_of(session, customer_id)),
        before.model_dump(mode="json", **snapshot),
        after.model_dump(mode="json", **snapshot),
    )
    return after


@router.get(
    "/customers/{customer_id}/relationship-manager/history",
    summary="List a customer's manager history",
    response_model=Page[AssignmentChange],
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(404, 422),
)
async def customer_history(
    customer_id: ExternalIdPath, session: SessionDep, page: PageParams
) -> Page[AssignmentChange]:
    """Every assignment, reassignment (with its reason) and release of the customer, newest first."""
    return Page[AssignmentChange].of(await service.history(session, customer_id, page), page)


@creates(
    router,
    "/customers/{customer_id}/contacts",
    summary="Record a contact with a customer",
    location="/v1/customers/{customer_id}/contacts/{id}",
    response_model=ContactRead,
    dependencies=[require_scope(Scope.CONTACTS_WRITE)],
    responses=problem_responses(404, 422),
)
async def record_contact(
    customer_id: ExternalIdPath, body: ContactCreate, session: SessionDep, request: Request
) -> ContactRead:
    """A call, visit or message, its channel and outcome, and a note (personal data: never logged, erased with the
    customer). By the customer's manager unless `manager_id` names another. Send an Idempotency-Key."""
    return await service.record_contact(session, customer_id, body, request.state.principal.name)


@router.get(
    "/customers/{customer_id}/contacts",
    summary="List a customer's contacts",
    response_model=Page[ContactRead],
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(404, 422),
)
async def list_customer_contacts(
    customer_id: ExternalIdPath, session: SessionDep, page: PageParams
) -> Page[ContactRead]:
    """The customer's contacts, newest first; follow `next_cursor`."""
    return Page[ContactRead].of(await service.list_customer_contacts(session, customer_id, page), page)


@router.get(
    "/customers/{customer_id}/contacts/{contact_id}",
    summary="Get a contact",
    response_model=ContactRead,
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(404, 422),
)
async def get_contact(
    customer_id: ExternalIdPath,
    contact_id: Annotated[ParamInteger(1, BIGINT_MAX), Path(description="The contact's id.", examples=[1])],
    session: SessionDep,
) -> ContactRead:
    """One contact of the customer's."""
    return await service.get_contact(session, customer_id, contact_id)


@router.get(
    "/reports/manager-coverage",
    summary="Relationship-manager coverage report",
    response_model=CoverageReport,
    dependencies=[require_scope(Scope.REPORTS_READ)],
)
async def manager_coverage(session: SessionDep) -> CoverageReport:
    """Per served tier: its customers now, how many have a manager, the share; per manager: capacity, load and
    utilisation."""
    return await service.coverage(session)


@router.get(
    "/relationship-managers/{manager_id}/worklist",
    summary="Get a manager's worklist",
    response_model=Page[TaskRead],
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(404, 422),
)
async def get_worklist(manager_id: ManagerIdPath, session: SessionDep, page: PageParams) -> Page[TaskRead]:
    """Today's tasks for the manager's customers, each with a reason (quoting its numbers) and a due date,
    generated from data as it is read (each once per customer, kind and period): a downgrade at risk (the customer
    qualifies for a lower tier; due when the grace ends), a contact cadence overdue (no contact within the tier's
    cadence, set at /v1/contact-cadences), and the kinds /v1/worklist-rules turns on: care dates (birthdays,
    onboarding anniversaries and the holidays of /v1/care-calendar/holidays, due the configured days before),
    complaints open past their SLA, near-miss upgrades (within a share of the next tier, by the gap the benefits
    view shows) and valuable customers gone quiet (the lifecycle policy's quiet tiers). Open tasks and those whose
    snooze is over; a task moves with its customer."""
    return Page[TaskRead].of(await worklist.worklist(session, manager_id, page), page)


@router.patch(
    "/manager-tasks/{task_id}",
    summary="Work a task",
    response_model=TaskRead,
    dependencies=[require_scope(Scope.MANAGERS_WRITE)],
    responses=problem_responses(404, 409, 422),
)
async def update_task(
    task_id: Annotated[ParamInteger(1, BIGINT_MAX), Path(description="The task's id.", examples=[1])],
    body: TaskUpdate,
    session: SessionDep,
    request: Request,
) -> TaskRead:
    """Done, dismissed (closed; 409 when closed already) or snoozed until a day, with an outcome; done with the
    `contact` that did it records that contact in the log (it counts toward the cadence). The same task is not
    generated again."""
    before, after = await worklist.update_task(session, task_id, body, request.state.principal.name)
    await audit_service.record(
        session,
        request.state.principal.name,
        "manager.task",
        "manager_task",
        task_id,
        {"state": before},
        {"state": after.state, "snoozed_until": str(after.snoozed_until) if after.snoozed_until else None},
    )
    return after


@router.get(
    "/contact-cadences",
    summary="List contact cadences",
    response_model=Page[CadenceRead],
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(422),
)
async def list_cadences(session: SessionDep, page: PageParams) -> Page[CadenceRead]:
    """How often a customer of each tier is to be contacted."""
    return Page[CadenceRead].of_sequence(await worklist.list_cadences(session, page), page)


@router.put(
    "/contact-cadences/{policy_key}/{tier}",
    summary="Set a tier's contact cadence",
    response_model=CadenceRead,
    dependencies=[require_scope(Scope.MANAGERS_WRITE)],
    responses=problem_responses(422),
)
async def set_cadence(
    policy_key: Annotated[
        str, Path(pattern=r"^[a-z][a-z0-9_\-]{1,39}$", description="The policy.", examples=["wealth"])
    ],
    tier: Annotated[
        str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-]{0,39}$", description="The tier's code.", examples=["private"])
    ],
    body: CadenceSet,
    session: SessionDep,
    request: Request,
) -> CadenceRead:
    """A contact every `days` days for the tier's customers who have a manager; an overdue one is a task."""
    before, after = await worklist.set_cadence(session, policy_key, tier, body.days)
    await audit_service.record(
        session,
        request.state.principal.name,
        "manager.cadence",
        "contact_cadence",
        f"{policy_key}:{tier}",
        None if before is None else {"days": before},
        {"days": after.days},
    )
    return after
