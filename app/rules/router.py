"""HTTP routes for the attribute catalog: every attribute a rule may reference, and the custom attributes a bank
declares."""

from typing import Annotated

from fastapi import APIRouter, Path, Request

from app.audit import service as audit_service
from app.core.db import SessionDep
from app.core.errors import NotFound, PreconditionFailed, problem_responses
from app.core.etag import CONDITIONAL_GET_RESPONSES, CONDITIONAL_WRITE_RESPONSES, ConditionalGet, ConditionalWrite
from app.core.pagination import Page, PageParams
from app.core.security import Scope, require_scope
from app.products import service as products_service
from app.rules import custom_attributes
from app.rules.attributes import AttributeRead, is_builtin_attribute, list_attributes, load_catalog
from app.rules.errors import AttributeNameTaken
from app.rules.schemas import AttributeDefinitionPut, AttributeDefinitionRead
from app.tiering import policies

router = APIRouter(prefix="/v1/attributes", tags=["attributes"], responses=problem_responses(401, 403))
custom_attributes_router = APIRouter(
    prefix="/v1/attributes/custom", tags=["attributes"], responses=problem_responses(401, 403)
)


@router.get(
    "",
    summary="List the attributes rules may use",
    response_model=Page[AttributeRead],
    dependencies=[require_scope(Scope.ATTRIBUTES_READ)],
    responses=problem_responses(422),
)
async def list_rule_attributes(session: SessionDep, page: PageParams) -> Page[AttributeRead]:
    """The attribute catalog: built-in metrics and the bank's custom attributes, with their type, unit and the
    operators a condition may apply to each. Built-ins first, then custom attributes by name; follow
    `next_cursor`."""
    return Page[AttributeRead].of_sequence(list_attributes(await load_catalog(session)), page)


AttributeName = Annotated[
    str,
    Path(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="snake_case name; a built-in attribute's name (GET /v1/attributes) is taken: 409",
        examples=["employer_payroll"],
    ),
]


@custom_attributes_router.get(
    "",
    summary="List custom attributes",
    response_model=Page[AttributeDefinitionRead],
    dependencies=[require_scope(Scope.ATTRIBUTES_READ)],
    responses=problem_responses(422),
)
async def list_attribute_definitions(session: SessionDep, page: PageParams) -> Page[AttributeDefinitionRead]:
    """Custom attributes the bank has declared, by name; follow `next_cursor`."""
    definitions = await custom_attributes.list_attribute_definitions(session)
    return Page[AttributeDefinitionRead].of_sequence(
        [AttributeDefinitionRead.model_validate(d) for d in definitions], page
    )


@custom_attributes_router.get(
    "/{name}",
    summary="Get a custom attribute",
    response_model=AttributeDefinitionRead,
    dependencies=[require_scope(Scope.ATTRIBUTES_READ)],
    responses={**CONDITIONAL_GET_RESPONSES, **problem_responses(404, 422)},
)
async def get_attribute_definition(
    name: AttributeName, session: SessionDep, conditional: ConditionalGet
) -> AttributeDefinitionRead:
    """One custom attribute's declaration, with its ETag (If-None-Match: 304 while unchanged; If-Match on PUT:
    describe it again safely)."""
    definition = await custom_attributes.get_attribute_definition(session, name)
    if definition is None:
        raise NotFound(f"No custom attribute '{name}'.")
    return conditional.respond(AttributeDefinitionRead.model_validate(definition))


@custom_attributes_router.put(
    "/{name}",
    summary="Declare a custom attribute",
    response_model=AttributeDefinitionRead,
    dependencies=[require_scope(Scope.ATTRIBUTES_WRITE)],
    responses={**CONDITIONAL_WRITE_RESPONSES, **problem_responses(409, 422)},
)
async def put_attribute_definition(
    name: AttributeName,
    body: AttributeDefinitionPut,
    session: SessionDep,
    conditional: ConditionalWrite,
    request: Request,
) -> AttributeDefinitionRead:
    """Declare (or describe again) a typed custom attribute; customers may then carry it and rules use it. With
    If-Match, only if it exists and nobody changed it since you read it (412 otherwise). Audited
    (custom_attribute.create or .update, type, description and unit before and after)."""
    if is_builtin_attribute(name):
        raise AttributeNameTaken(name)
    if conditional.if_match is not None:
        current = await custom_attributes.get_attribute_definition(session, name, lock=True)
        if current is None:
            raise PreconditionFailed(f"No custom attribute '{name}' to match If-Match against.")
        conditional.check(AttributeDefinitionRead.model_validate(current))

    async def readers() -> list[str]:
        return [
            *await policies.versions_reading_attribute(session, name),
            *await products_service.products_reading_attribute(session, name),
        ]

    before = _definition_snapshot(await custom_attributes.get_attribute_definition(session, name))
    definition = await custom_attributes.put_attribute_definition(
        session, name, body.type, body.description, body.unit, readers
    )
    await audit_service.record(
        session,
        request.state.principal.name,
        "custom_attribute.create" if before is None else "custom_attribute.update",
        "custom_attribute",
        name,
        before,
        _definition_snapshot(definition),
    )
    return conditional.respond(AttributeDefinitionRead.model_validate(definition))


def _definition_snapshot(definition) -> dict | None:
    if definition is None:
        return None
    return {"type": definition.type, "description": definition.description, "unit": definition.unit}
