"""Request and response bodies of the custom attribute definitions (the condition language's own AST is in
schema.py; GET /v1/attributes lists the catalog as attributes.AttributeRead)."""

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from app.core.strict import NO_NUL_PATTERN
from app.rules.attributes import AttributeType


class AttributeDefinitionPut(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"type": "boolean", "description": "Salary is paid into an account with us."},
                {"type": "number", "unit": "EUR", "description": "Declared annual income."},
            ]
        },
    )

    type: AttributeType
    description: str = Field("", max_length=500, pattern=NO_NUL_PATTERN)
    unit: str | None = Field(None, max_length=20, pattern=NO_NUL_PATTERN)


class AttributeDefinitionRead(AttributeDefinitionPut):
    model_config = ConfigDict(from_attributes=True)

    name: str
    created_at: datetime
