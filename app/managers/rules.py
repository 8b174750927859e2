"""The worklist rules (one document the bank changes: a section per configurable task kind) and the care holiday
calendar (holidays by date, each a care task for every managed customer); the session is flushed, never
committed."""

from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import unique_or_raise
from app.core.errors import Conflict, InvalidInput, NotFound
from app.core.pagination import PageRequest, keyset
from app.managers.models import CareHoliday, WorklistRules
from app.managers.rule_schemas import (
    HolidayCreate,
    HolidayRead,
    HolidayUpdate,
    WorklistRulesRead,
    WorklistRulesSet,
)
from app.managers.schemas import ServedTiers
from app.managers.service import _check_serves

SECTIONS = ("care", "complaint_sla", "near_miss", "gone_quiet")


class HolidayNotFound(NotFound):
    def __init__(self, holiday_key: str) -> None:
        super().__init__(f"No holiday '{holiday_key}' in the care calendar.", holiday_key=holiday_key)


class HolidayKeyTaken(Conflict):
    def __init__(self, holiday_key: str) -> None:
        super().__init__(f"The care calendar has a holiday '{holiday_key}' already.", holiday_key=holiday_key)


def _rules_read(row: WorklistRules | None) -> WorklistRulesRead:
    if row is None:
        return WorklistRulesRead(updated_at=None)
    return WorklistRulesRead(**{name: getattr(row, name) for name in SECTIONS}, updated_at=row.updated_at)


async def get_rules(session: AsyncSession, *, lock: bool = False) -> WorklistRulesRead:
    query = select(WorklistRules).where(WorklistRules.id == 1).execution_options(populate_existing=True)
    return _rules_read(await session.scalar(query.with_for_update() if lock else query))


async def _check_tiers(session: AsyncSession, policy_key: str, tiers: list[str], policy_field: str, tiers_field: str):
    """The policy exists with those tiers (422 naming /gone_quiet/<field>)."""
    try:
        await _check_serves(session, ServedTiers(policy_key=policy_key, tiers=tiers), "")
    except InvalidInput as error:
        pointer = error.errors[0]["pointer"]
        field = policy_field if pointer == "/policy_key" else tiers_field + pointer.removeprefix("/tiers")
        raise InvalidInput(f"/gone_quiet/{field}", error.errors[0]["detail"]) from None


async def set_rules(session: AsyncSession, body: WorklistRulesSet) -> WorklistRulesRead:
    """Replace the rules (every section: one left out is off). The policies and tiers named must exist."""
    quiet = body.gone_quiet
    if quiet is not None:
        await _check_tiers(
            session, quiet.lifecycle_policy_key, quiet.quiet_tiers, "lifecycle_policy_key", "quiet_tiers"
        )
        await _check_tiers(
            session, quiet.valuable_policy_key, quiet.valuable_tiers, "valuable_policy_key", "valuable_tiers"
        )
    values = {name: (getattr(body, name).model_dump(mode="json") if getattr(body, name) else None) for name in SECTIONS}
    now = datetime.now(UTC)
    statement = insert(WorklistRules).values(id=1, updated_at=now, **values)
    await session.execute(statement.on_conflict_do_update(index_elements=["id"], set_={"updated_at": now, **values}))
    return await get_rules(session)


# The care holiday calendar


def holiday_read(row: CareHoliday) -> HolidayRead:
    return HolidayRead(
        holiday_key=row.holiday_key, name=row.name, names=row.names, date=row.day, updated_at=row.updated_at
    )


async def get_holiday(session: AsyncSession, holiday_key: str, *, lock: bool = False) -> CareHoliday:
    query = select(CareHoliday).where(CareHoliday.holiday_key == holiday_key)
    row = await session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise HolidayNotFound(holiday_key)
    return row


async def create_holiday(session: AsyncSession, body: HolidayCreate) -> HolidayRead:
    if await session.scalar(select(CareHoliday.id).where(CareHoliday.holiday_key == body.holiday_key)) is not None:
        raise HolidayKeyTaken(body.holiday_key)
    row = CareHoliday(holiday_key=body.holiday_key, name=body.name, names=dict(body.names), day=body.date)
    async with unique_or_raise(session, HolidayKeyTaken(body.holiday_key)):
        session.add(row)
        await session.flush()
    await session.refresh(row)
    return holiday_read(row)


async def update_holiday(session: AsyncSession, row: CareHoliday, body: HolidayUpdate) -> HolidayRead:
    changes = body.model_dump(exclude_unset=True)
    for name in ("name", "names", "date"):
        if name in changes and changes[name] is None:
            raise InvalidInput(f"/{name}", "may not be null")
    if "name" in changes:
        row.name = body.name
    if "names" in changes:
        row.names = dict(body.names)
    if "date" in changes:
        row.day = body.date
    if changes:
        row.updated_at = datetime.now(UTC)
    await session.flush()
    await session.refresh(row)
    return holiday_read(row)


async def delete_holiday(session: AsyncSession, row: CareHoliday) -> None:
    await session.delete(row)
    await session.flush()


async def list_holidays(session: AsyncSession, page: PageRequest, *, year: int | None = None) -> list[CareHoliday]:
    query = select(CareHoliday)
    if year is not None:
        query = query.where(
            CareHoliday.day >= datetime(year, 1, 1).date(), CareHoliday.day < datetime(year + 1, 1, 1).date()
        )
    return list((await session.scalars(keyset(query, CareHoliday.id, page))).all())
