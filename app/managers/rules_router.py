"""HTTP routes for the worklist rules (one document: the settings of each configurable task kind, admin writes
audited, with If-Match) and the care holiday calendar (/v1/care-calendar/holidays, beside the care calendar of
birthdays and anniversaries)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response, status

from app.audit.service import record_change
from app.audit.writes import AuditedWrite
from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.etag import CONDITIONAL_GET_RESPONSES, CONDITIONAL_WRITE_RESPONSES, ConditionalGet
from app.core.idempotency import creates
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.core.strict import ParamInteger
from app.managers import rules
from app.managers.rule_schemas import HolidayCreate, HolidayRead, HolidayUpdate, WorklistRulesRead, WorklistRulesSet

router = APIRouter(prefix="/v1", tags=["relationship-managers"], responses=problem_responses(401, 403))

HolidayKeyPath = Annotated[
    str,
    Path(
        alias="holiday_key",
        pattern=r"^[a-z0-9][a-z0-9_\-]{1,39}$",
        description="The bank's key for the holiday that year.",
        examples=["mid-autumn-2027"],
    ),
]


@router.get(
    "/worklist-rules",
    summary="Get the worklist rules",
    response_model=WorklistRulesRead,
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=CONDITIONAL_GET_RESPONSES,
)
async def get_worklist_rules(session: SessionDep, conditional: ConditionalGet) -> WorklistRulesRead:
    """The settings of each task kind the bank configures (null: the kind is off), with its ETag. Downgrades at
    risk are always on; contact cadences are per tier at /v1/contact-cadences."""
    return conditional.respond(await rules.get_rules(session))


@router.put(
    "/worklist-rules",
    summary="Set the worklist rules",
    response_model=WorklistRulesRead,
    dependencies=[require_scope(Scope.MANAGERS_WRITE)],
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(422)},
)
async def set_worklist_rules(body: WorklistRulesSet, session: SessionDep, write: AuditedWrite) -> WorklistRulesRead:
    """Replace the rules; a section left out or null turns its kind off. `care`: a task the given days before
    each customer's birthday and onboarding anniversary, and before each holiday of the care calendar;
    `complaint_sla`: a task for a complaint still open past its SLA (per category, or the default);
    `near_miss`: a task for a customer within `share` of the next tier of their manager's policy (the gap the
    benefits view shows); `gone_quiet`: a task for a customer in a valuable tier whose lifecycle tier is a quiet
    one, and, with `min_churn_risk`, for one whose churn_risk (the newest churn model's score; none while no model is
    fitted) is at or above it. Tasks already generated stay. With If-Match, only if unchanged; audited."""
    before = await rules.get_rules(session, lock=True)
    return await write.update("worklist.rules", "worklist_rules", 1, before, lambda: rules.set_rules(session, body))


@creates(
    router,
    "/care-calendar/holidays",
    summary="Add a holiday to the care calendar",
    location="/v1/care-calendar/holidays/{holiday_key}",
    response_model=HolidayRead,
    dependencies=[require_scope(Scope.MANAGERS_WRITE)],
    responses=problem_responses(409, 422),
)
async def create_holiday(body: HolidayCreate, session: SessionDep, request: Request) -> HolidayRead:
    """A holiday on its date that year (Spring Festival 2027: 2027-02-06): with the `care` rule's holidays on,
    every managed customer gets a greeting task `holiday_days_before` days before it. Audited."""
    created = await rules.create_holiday(session, body)
    await record_change(session, request, "holiday.create", "care_holiday", created.holiday_key, None, created)
    return created


@router.get(
    "/care-calendar/holidays",
    summary="List the care calendar's holidays",
    response_model=Page[HolidayRead],
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses=problem_responses(422),
)
async def list_holidays(
    session: SessionDep,
    page: PageParams,
    year: Annotated[ParamInteger(1900, 2100) | None, Query(description="Only holidays of this year.")] = None,
) -> Page[HolidayRead]:
    """Holidays in the order they were added; follow `next_cursor`."""
    return Page[HolidayRead].of(await rules.list_holidays(session, page, year=year), page, rules.holiday_read)


@router.get(
    "/care-calendar/holidays/{holiday_key}",
    summary="Get a holiday of the care calendar",
    response_model=HolidayRead,
    dependencies=[require_scope(Scope.MANAGERS_READ)],
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(404, 422)},
)
async def get_holiday(holiday_key: HolidayKeyPath, session: SessionDep, conditional: ConditionalGet) -> HolidayRead:
    """One holiday, with its ETag."""
    return conditional.respond(rules.holiday_read(await rules.get_holiday(session, holiday_key)))


@router.patch(
    "/care-calendar/holidays/{holiday_key}",
    summary="Change a holiday of the care calendar",
    response_model=HolidayRead,
    dependencies=[require_scope(Scope.MANAGERS_WRITE)],
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(404, 422)},
)
async def update_holiday(
    holiday_key: HolidayKeyPath,
    body: HolidayUpdate,
    session: SessionDep,
    write: AuditedWrite,
) -> HolidayRead:
    """Change its name or date (tasks already generated for it stay). With If-Match, only if unchanged; audited."""
    row = await rules.get_holiday(session, holiday_key, lock=True)
    before = rules.holiday_read(row)
    return await write.update(
        "holiday.update", "care_holiday", holiday_key, before, lambda: rules.update_holiday(session, row, body)
    )


@router.delete(
    "/care-calendar/holidays/{holiday_key}",
    summary="Remove a holiday from the care calendar",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    dependencies=[require_scope(Scope.MANAGERS_WRITE)],
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(404, 422)},
)
async def delete_holiday(holiday_key: HolidayKeyPath, session: SessionDep, write: AuditedWrite) -> Response:
    """No more tasks for it (those generated stay). With If-Match, only if unchanged; audited."""
    row = await rules.get_holiday(session, holiday_key, lock=True)
    before = rules.holiday_read(row)
    return await write.delete(
        "holiday.delete", "care_holiday", holiday_key, before, lambda: rules.delete_holiday(session, row)
    )
