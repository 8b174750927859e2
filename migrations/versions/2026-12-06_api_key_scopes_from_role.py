"""api key scopes from the role: a key's scopes are its role's (app.core.security.ROLE_SCOPES), read when the key
is resolved, so that narrowing a role applies to the keys that exist; the per-key copy is dropped.

Revision ID: b3c0ffee0013
Revises: b2c0ffee0012
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "b3c0ffee0013"
down_revision: str | None = "b2c0ffee0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The roles' scopes as the previous revision's code stored them, to give a downgraded key what it had.
_PREVIOUS_SCOPES = {
    "app": [
        "attributes:read",
        "customers:read",
        "feedback:write",
        "products:read",
        "recommendations:read",
        "tiers:read",
    ],
    "integration": ["attributes:read", "customers:read", "customers:write", "events:write", "products:read"],
    "admin": [
        "admin",
        "attributes:read",
        "attributes:write",
        "customers:read",
        "customers:write",
        "events:write",
        "feedback:write",
        "policies:read",
        "policies:write",
        "products:read",
        "products:write",
        "recommendations:read",
        "reports:read",
        "tiers:read",
        "tiers:write",
    ],
}


def upgrade() -> None:
    op.drop_column("api_key", "scopes")


def downgrade() -> None:
    op.add_column("api_key", sa.Column("scopes", postgresql.ARRAY(sa.Text()), server_default="{}", nullable=False))
    for role, scopes in _PREVIOUS_SCOPES.items():
        op.execute(
            sa.text("UPDATE api_key SET scopes = :scopes WHERE role = :role").bindparams(scopes=scopes, role=role)
        )
    op.alter_column("api_key", "scopes", server_default=None)
