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

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "a7c0ffee0036"
down_revision: str | None = "a4c0ffee0031"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _previous():
    """a4c0ffee0031's module: its JSON helpers, and its trigger function for the downgrade."""
    path = Path(__file__).with_name("2026-12-06_tier_assignment_lean_text.py")
    spec = importlib.util.spec_from_file_location("tier_assignment_lean_text_a4c0ffee0031", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_PREVIOUS = _previous()
_timestamp, _string = _PREVIOUS._timestamp, _PREVIOUS._string


def _sql(statement: str) -> sa.TextClause:
    return sa.text(statement.replace(":", "\\:"))  # its JSON text holds `":false`, not bind parameters


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
    op.execute(_sql(_PREVIOUS.FUNCTION.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)))
    op.execute("DROP FUNCTION tier_assignment_lean_tail(timestamptz, timestamptz, text, timestamptz, integer)")
