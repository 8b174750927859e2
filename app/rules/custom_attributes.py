"""Custom attribute definitions: the typed attributes a bank declares, and the check of the values customers carry
against them. Conditions reference them like built-ins (attributes.load_catalog)."""

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.strict import NUMBER_LIMIT, YEARS, fits_bigint, is_iso_day
from app.customers.models import Customer
from app.rules.errors import AttributeDefinitionInUse
from app.rules.models import CustomAttributeDefinition


async def list_attribute_definitions(session: AsyncSession) -> list[CustomAttributeDefinition]:
    return list(await session.scalars(select(CustomAttributeDefinition).order_by(CustomAttributeDefinition.name)))


async def get_attribute_definition(
    session: AsyncSession, name: str, *, lock: bool = False
) -> CustomAttributeDefinition | None:
    """A custom attribute's definition as stored now (read again from the database, not the session's copy), or
    None; `lock`: its row locked for this transaction."""
    query = (
        select(CustomAttributeDefinition)
        .where(CustomAttributeDefinition.name == name)
        .execution_options(populate_existing=True)
    )
    return await session.scalar(query.with_for_update() if lock else query)


async def put_attribute_definition(
    session: AsyncSession,
    name: str,
    type_: str,
    description: str,
    unit: str | None,
    readers: Callable[[], Awaitable[list[str]]] | None = None,
) -> CustomAttributeDefinition:
    """Declare or describe again a custom attribute. Its type may change only while no customer carries it and no
    rule reads it (`readers`: the documents that read it, e.g. "tier policy wealth v2", asked only on a type change;
    the rules package cannot ask the domains that hold rules itself)."""
    existing = await session.get(CustomAttributeDefinition, name)
    if existing is not None and existing.type != type_:
        in_use = await session.scalar(
            select(func.count()).select_from(Customer).where(Customer.attributes.has_key(name))
        )
        if in_use:
            raise AttributeDefinitionInUse(f"{in_use} customers carry '{name}'; its type cannot change.")
        if readers is not None and (reading := await readers()):
            raise AttributeDefinitionInUse(f"'{name}' is read by {', '.join(reading)}; its type cannot change.")
    stmt = insert(CustomAttributeDefinition).values(name=name, type=type_, description=description, unit=unit)
    stmt = stmt.on_conflict_do_update(
        index_elements=["name"], set_={"type": type_, "description": description, "unit": unit}
    )
    await session.execute(stmt)
    return await session.get(CustomAttributeDefinition, name, populate_existing=True)


def _attribute_type_error(type_: str, value: Any) -> str | None:
    """Why value does not fit a custom attribute of type type_, or None when it fits."""
    if type_ == "number" and (
        isinstance(value, bool) or not isinstance(value, (int, float)) or not abs(value) < NUMBER_LIMIT
    ):
        return f"must be a finite number below {NUMBER_LIMIT:.0e} in size"
    if type_ == "integer" and (isinstance(value, bool) or not isinstance(value, int) or not fits_bigint(value)):
        return "must be an integer within bigint"
    if type_ == "boolean" and not isinstance(value, bool):
        return "must be true or false"
    if type_ == "string" and not (isinstance(value, str) and len(value) <= 500):
        return "must be a string of at most 500 characters"
    if type_ == "date" and not is_iso_day(value):
        return f"must be an ISO date (YYYY-MM-DD), {YEARS}"
    if type_ == "string_set" and not (
        isinstance(value, list)
        and len(value) <= 100
        and all(isinstance(v, str) and len(v) <= 100 for v in value)
        and len(set(value)) == len(value)
    ):
        return "must be a list of distinct strings"
    return None


def attribute_errors(
    attributes: dict[str, Any], definitions: dict[str, str], pointer: str = "/attributes"
) -> list[dict[str, str]]:
    """One error per custom attribute that is undeclared or of the wrong type (null clears a value)."""
    errors = []
    for name, value in attributes.items():
        where = f"{pointer}/{name}"
        if name not in definitions:
            errors.append({"pointer": where, "detail": f"no custom attribute '{name}' is declared"})
        elif value is not None and (why := _attribute_type_error(definitions[name], value)):
            errors.append({"pointer": where, "detail": f"{why} ({definitions[name]})"})
    return errors


async def attribute_types(session: AsyncSession) -> dict[str, str]:
    rows = await session.execute(select(CustomAttributeDefinition.name, CustomAttributeDefinition.type))
    return dict(rows.all())
