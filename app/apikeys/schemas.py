"""API key request and response bodies."""

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import TypeAliasType

from app.core.security import Scope
from app.core.strict import NO_NUL_PATTERN

Role = TypeAliasType(
    "Role",
    Annotated[
        Literal["app", "integration", "admin"],
        Field(
            description="A preset of scopes: app (mobile backend), integration (core-banking feeds), "
            "admin (everything)."
        ),
    ],
)


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "mobile-backend-prod", "role": "app"}]}
    )

    name: str = Field(
        min_length=1, max_length=100, pattern=NO_NUL_PATTERN, description="Who uses the key, e.g. the calling system."
    )
    role: Role = Field(description="A preset: app (mobile backend), integration (core-banking feeds) or admin.")


class ApiKeyRead(BaseModel):
    id: int
    name: str
    role: Role
    scopes: list[Scope] = Field(description="The role's scopes, as this service grants them now (not stored per key).")
    lookup_id: str = Field(description="The public part of the key (tw_<lookup_id>_...), to tell keys apart.")
    created_at: datetime
    revoked_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="The key itself. Shown this once; only its hash is stored.")
