"""effective tier: one definition of the tier a customer has under a policy (an unexpired override wins over the
tier the rules and grace gave), as SQL functions of a tier_assignment row

Raw SQL calls them as `effective_tier(a)`, SQLAlchemy through app.tiering.models.effective_tier. They are
LANGUAGE sql, STABLE and a single expression, so Postgres inlines them: a statement that calls one plans as if the
CASE were written out (each column read straight from the row).

Revision ID: b2c0ffee0012
Revises: b1c0ffee0011
Create Date: 2026-12-06 00:40:00.000000
"""

from collections.abc import Sequence

from alembic import op

revision: str = "b2c0ffee0012"
down_revision: str | None = "b1c0ffee0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FUNCTIONS = {
    "tier_override_applies": (
        "boolean",
        "a.override_code IS NOT NULL AND (a.override_expires_at IS NULL OR a.override_expires_at > now())",
    ),
    "effective_tier": ("text", "CASE WHEN tier_override_applies(a) THEN a.override_code ELSE a.tier_code END"),
    "effective_rank": ("integer", "CASE WHEN tier_override_applies(a) THEN a.override_rank ELSE a.tier_rank END"),
}


def upgrade() -> None:
    for name, (returns, body) in FUNCTIONS.items():
        op.execute(
            f"CREATE FUNCTION {name}(a tier_assignment) RETURNS {returns} "
            f"LANGUAGE sql STABLE PARALLEL SAFE AS $$ SELECT {body} $$"
        )


def downgrade() -> None:
    for name in reversed(FUNCTIONS):
        op.execute(f"DROP FUNCTION {name}(tier_assignment)")
