"""Audit events as the API shows them."""

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class AuditEventRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str = Field(description="The name of the API key that made the change.")
    action: str = Field(description="What was done, e.g. `policy.activate`, `product.update`, `api_key.revoke`.")
    entity_type: str = Field(description="The kind of thing changed: policy, product, api_key, tier_override.")
    entity_key: str = Field(description="Which one: a policy key with its version, a product code, a key id.")
    before: dict[str, Any] | None = Field(description="Its state before the change; null when created.")
    after: dict[str, Any] | None = Field(description="Its state after the change; null when removed.")
