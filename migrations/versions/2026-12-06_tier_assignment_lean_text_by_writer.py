"""tier assignment lean text: one SQL function computes `lean_tail`, and a bulk writer that fills it in its own
statement skips the row trigger

`tier_assignment_lean_tail(since, evaluated_at, qualified_code, lower_since, grace_days)` is the text the trigger
of a4c0ffee0031 wrote, moved into a plain SQL function (inlined wherever it is called: no call per row). The
trigger function now calls it, and so does the tier assignment statement (app/tiering/assignment/compile.py),
which knows the version's grace and writes the text with the row: the same expression, so the same bytes.

The one trigger `tier_assignment_lean` becomes two with a WHEN clause, so a row whose writer supplied the text does
not enter PL/pgSQL at all:
- `tier_assignment_lean` (BEFORE INSERT) fires when the new row has no `lean_tail` (every writer but the
  assignment statement; an insert by the assignment statement has no override, so no `lean_override`);
- `tier_assignment_lean_update` (BEFORE UPDATE) fires unless the update wrote a new `lean_tail`: an update that
  leaves the text as it was (an override set or cleared, a grace changed: the rewrite's no-op update, an erasure)
  has it recomputed from the row as before. The assignment statement's update changes `evaluated_at`, which the
  text holds, so the text it writes is always new; it leaves the override columns as they were, and with them
  `lean_override`.

Revision ID: a7c0ffee0036
Revises: a4c0ffee0031
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a7c0ffee0036"
down_revision: str | None = "a4c0ffee0031"
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


# A plain SQL function of one expression, neither strict nor volatile: the planner inlines it into the calling
# expression (the trigger's assignment, the statement's target list).
LEAN_TAIL = f"""
CREATE FUNCTION tier_assignment_lean_tail(
    since timestamptz, evaluated_at timestamptz, qualified_code text, lower_since timestamptz, grace_days integer
) RETURNS text LANGUAGE sql STABLE PARALLEL SAFE AS $$
SELECT ',"since":' || {_timestamp("since")} || ',"evaluated_at":' || {_timestamp("evaluated_at")}
    || ',"qualified_tier":' || {_string("qualified_code")}
    || CASE WHEN lower_since IS NULL THEN ',"at_risk":false,"downgrade_to":null,"downgrade_on":null'
            ELSE ',"at_risk":true,"downgrade_to":' || {_string("qualified_code")} || ',"downgrade_on":"'
                 || to_char(((lower_since AT TIME ZONE 'UTC')
                             + make_interval(days => coalesce(grace_days, 0)))::date, 'YYYY-MM-DD') || '"' END
    || ',"override":'
$$
"""

FUNCTION = f"""
CREATE OR REPLACE FUNCTION tier_assignment_lean() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    grace_days integer;
BEGIN
    IF NEW.lower_since IS NOT NULL THEN
        SELECT v.downgrade_grace_days INTO grace_days FROM tier_policy_version v WHERE v.id = NEW.version_id;
    END IF;
    NEW.lean_tail := tier_assignment_lean_tail(NEW.since, NEW.evaluated_at, NEW.qualified_code, NEW.lower_since,
                                               grace_days);
    NEW.lean_override := CASE WHEN NEW.override_code IS NOT NULL
        THEN '{{"tier":' || {_string("NEW.override_code")} || ',"reason":' || {_string("NEW.override_reason")}
             || ',"actor":' || {_string("NEW.override_actor")} || ',"expires_at":'
             || coalesce({_timestamp("NEW.override_expires_at")}, 'null') || '}},"explanation":null}}'
        END;
    RETURN NEW;
END
$$
"""

# a4c0ffee0031's trigger function, for the downgrade
OLD_FUNCTION = f"""
CREATE OR REPLACE FUNCTION tier_assignment_lean() RETURNS trigger LANGUAGE plpgsql AS $$
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


def _sql(statement: str) -> sa.TextClause:
    return sa.text(statement.replace(":", "\\:"))  # its JSON text holds `":false`, not bind parameters


def upgrade() -> None:
    op.execute(_sql(LEAN_TAIL))
    op.execute(_sql(FUNCTION))
    op.execute("DROP TRIGGER tier_assignment_lean ON tier_assignment")
    op.execute(
        "CREATE TRIGGER tier_assignment_lean BEFORE INSERT ON tier_assignment "
        "FOR EACH ROW WHEN (NEW.lean_tail IS NULL) EXECUTE FUNCTION tier_assignment_lean()"
    )
    op.execute(
        "CREATE TRIGGER tier_assignment_lean_update BEFORE UPDATE ON tier_assignment "
        "FOR EACH ROW WHEN (NEW.lean_tail IS NOT DISTINCT FROM OLD.lean_tail) EXECUTE FUNCTION tier_assignment_lean()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER tier_assignment_lean_update ON tier_assignment")
    op.execute("DROP TRIGGER tier_assignment_lean ON tier_assignment")
    op.execute(
        "CREATE TRIGGER tier_assignment_lean BEFORE INSERT OR UPDATE ON tier_assignment "
        "FOR EACH ROW EXECUTE FUNCTION tier_assignment_lean()"
    )
    op.execute(_sql(OLD_FUNCTION))
    op.execute("DROP FUNCTION tier_assignment_lean_tail(timestamptz, timestamptz, text, timestamptz, integer)")
