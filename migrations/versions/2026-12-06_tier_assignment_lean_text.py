"""tier assignment lean text: each assignment stores the part of its lean JSON document (CustomerTier, explanation
null) that depends on the row alone, written by a trigger, so the lean bulk read mostly concatenates stored text

`lean_tail` is `,"since":...,"evaluated_at":...,"qualified_tier":...,"at_risk":...,"downgrade_to":...,
"downgrade_on":...,"override":`; `lean_override` is the override object followed by `,"explanation":null}` (null
without an override). What the read writes itself is what changes without the row changing: the head (policy key,
version number, tier and label: per version, tier and language, built once per call from tier_policy_version, so no
label is stored and none can go stale), the rank and whether the override shows (an override expires with time:
the effective_tier functions).

The trigger `tier_assignment_lean` (BEFORE INSERT OR UPDATE, every row) fills the two columns from the row (and the
version's grace for a pending downgrade's date), so every writer (tier runs, the per-customer re-tier, the re-tier
worker, overrides and their clearing) keeps them in step without knowing of them. A version's grace changing (the
service never does it once a version has assignments: only drafts are edited) rewrites its assignments' text
through the same trigger (`tier_policy_version_lean`). The upgrade fills the existing rows. The formatting is the
schema serializer's (app/tiering/assignment/lean_json.py; tests/tiering/test_lean_json.py holds the documents
byte-equal).

Revision ID: a4c0ffee0031
Revises: a6c0ffee0033
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4c0ffee0031"
down_revision: str | None = "a6c0ffee0033"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _timestamp(value: str) -> str:
    """The serializer's JSON of a timestamptz (not null): UTC, `Z`, six digits of fraction only when not zero."""
    utc = f"({value} AT TIME ZONE 'UTC')"
    return (
        f"""'"' || to_char({utc}, 'YYYY-MM-DD"T"HH24:MI:SS') """
        f"""|| CASE WHEN date_part('microseconds', {utc})::bigint % 1000000 <> 0 """
        f"""THEN to_char({utc}, '.US') ELSE '' END || 'Z"'"""
    )


def _string(value: str) -> str:
    return f"coalesce(to_json(({value})::text)::text, 'null')"


# Each assignment is one plain expression (no subquery in it), which PL/pgSQL evaluates without the executor's
# per-statement start: 3-4 us a row rather than ~30. The grace is looked up only for a pending downgrade.
FUNCTION = f"""
CREATE FUNCTION tier_assignment_lean() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grace_days integer;
BEGIN
    IF NEW.lower_since IS NOT NULL THEN
        SELECT v.downgrade_grace_days INTO grace_days FROM tier_policy_version v WHERE v.id = NEW.version_id;
    END IF;
    NEW.lean_tail := ',"since":' || {_timestamp("NEW.since")} || ',"evaluated_at":' || {_timestamp("NEW.evaluated_at")}
        || ',"qualified_tier":' || {_string("NEW.qualified_code")}
        || CASE WHEN NEW.lower_since IS NULL THEN ',"at_risk":false,"downgrade_to":null,"downgrade_on":null'
                ELSE ',"at_risk":true,"downgrade_to":' || {_string("NEW.qualified_code")} || ',"downgrade_on":"'
                     || to_char(((NEW.lower_since AT TIME ZONE 'UTC')
                                 + make_interval(days => coalesce(grace_days, 0)))::date, 'YYYY-MM-DD') || '"' END
        || ',"override":';
    NEW.lean_override := CASE WHEN NEW.override_code IS NOT NULL
        THEN '{{"tier":' || {_string("NEW.override_code")} || ',"reason":' || {_string("NEW.override_reason")}
             || ',"actor":' || {_string("NEW.override_actor")} || ',"expires_at":'
             || coalesce({_timestamp("NEW.override_expires_at")}, 'null') || '}},"explanation":null}}'
        END;
    RETURN NEW;
END
$$
"""

# A version's grace changed: a no-op update of its assignments, whose row trigger rewrites their text.
REWRITE = """
CREATE FUNCTION tier_assignment_lean_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE tier_assignment SET version_id = version_id WHERE version_id = NEW.id AND lower_since IS NOT NULL;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    for name in ("lean_tail", "lean_override"):
        op.add_column("tier_assignment", sa.Column(name, sa.Text(), nullable=True))
    op.execute(sa.text(FUNCTION.replace(":", "\\:")))  # its JSON text holds `":false`, not bind parameters
    op.execute(REWRITE)
    op.execute(
        "CREATE TRIGGER tier_assignment_lean BEFORE INSERT OR UPDATE ON tier_assignment "
        "FOR EACH ROW EXECUTE FUNCTION tier_assignment_lean()"
    )
    op.execute(
        "CREATE TRIGGER tier_policy_version_lean AFTER UPDATE OF downgrade_grace_days ON tier_policy_version "
        "FOR EACH ROW WHEN (OLD.downgrade_grace_days IS DISTINCT FROM NEW.downgrade_grace_days) "
        "EXECUTE FUNCTION tier_assignment_lean_rewrite()"
    )
    op.execute("UPDATE tier_assignment SET version_id = version_id")
    op.alter_column("tier_assignment", "lean_tail", nullable=False)


def downgrade() -> None:
    op.execute("DROP TRIGGER tier_policy_version_lean ON tier_policy_version")
    op.execute("DROP TRIGGER tier_assignment_lean ON tier_assignment")
    op.execute("DROP FUNCTION tier_assignment_lean_rewrite()")
    op.execute("DROP FUNCTION tier_assignment_lean()")
    for name in ("lean_override", "lean_tail"):
        op.drop_column("tier_assignment", name)
