"""webhook event traceparent: the W3C trace context of the change that emitted an event, passed on to receivers

Revision ID: d3c0ffee0017
Revises: d1c0ffee0014
Create Date: 2026-12-06 04:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d3c0ffee0017"
down_revision: str | None = "d1c0ffee0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("webhook_event", sa.Column("traceparent", sa.String(length=55), nullable=True))


def downgrade() -> None:
    op.drop_column("webhook_event", "traceparent")
