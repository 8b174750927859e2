"""GET /v1/attributes: every attribute a rule may reference."""

from fastapi import APIRouter

from app.core.db import SessionDep
from app.core.errors import problem_responses
from app.core.security import Scope, require_scope
from app.rules.attributes import AttributeRead, list_attributes, load_catalog

router = APIRouter(prefix="/v1/attributes", tags=["attributes"], responses=problem_responses(401, 403))


@router.get("", summary="List the attributes rules may use",
            response_model=list[AttributeRead], dependencies=[require_scope(Scope.ATTRIBUTES_READ)])
async def list_rule_attributes(session: SessionDep) -> list[AttributeRead]:
    """The attribute catalog: built-in metrics and the bank's custom attributes, with their type, unit and the
    operators a condition may apply to each."""
    return list_attributes(await load_catalog(session))
