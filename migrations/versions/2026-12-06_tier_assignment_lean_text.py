"""tier assignment lean text: each assignment stores the parts of its lean JSON document (CustomerTier, explanation
null) that depend on the row alone, written by a trigger, so the lean bulk read only concatenates stored text

`lean_head` is `{"policy_key":...,"policy_version":N,"tier":`; `lean_tail` is `,"since":...,"evaluated_at":...,
"qualified_tier":...,"at_risk":...,"downgrade_to":...,"downgrade_on":...,"override":`; `lean_override` is the
override object followed by `,"explanation":null}` (null without an override). What the read still writes per row
is what changes without the row changing: the tier, its rank and whether the override applies (an override
expires with time: the effective_tier functions), and the label (a version's labels, by language, read from
tier_policy_version at each call; no label is stored, so none can go stale).

The trigger `tier_assignment_lean` (BEFORE INSERT OR UPDATE, every row) fills the three columns from the row, the
policy's key and the version's number and grace, so every writer (tier runs, the per-customer re-tier, the
re-tier worker, overrides and their clearing) keeps them in step without knowing of them. A policy's key or a
version's number or grace changing (the service never does it once a version has assignments: only drafts are
edited) rewrites its assignments' text through the same trigger (`tier_policy_lean`, `tier_policy_version_lean`).
The upgrade fills the existing rows. The formatting is the schema serializer's (app/tiering/assignment/lean_json.py,
tests/tiering/test_lean_json.py holds the documents byte-equal).

Revision ID: a4c0ffee0031
Revises: f9c0ffee0030
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4c0ffee0031"
down_revision: str | None = "f9c0ffee0030"
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


FUNCTION = f"""
CREATE FUNCTION tier_assignment_lean() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    policy_key text := (SELECT p.key FROM tier_policy p WHERE p.id = NEW.policy_id);
    version_number integer;
    grace_days integer;
BEGIN
    SELECT v.version, v.downgrade_grace_days INTO version_number, grace_days
    FROM tier_policy_version v WHERE v.id = NEW.version_id;
    NEW.lean_head := '{{"policy_key":' || {_string("policy_key")}
        || ',"policy_version":' || coalesce(version_number::text, 'null') || ',"tier":';
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

# A no-op update of the rows concerned: the row trigger rewrites their text.
REWRITE = """
CREATE FUNCTION tier_assignment_lean_rewrite() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'tier_policy' THEN
        UPDATE tier_assignment SET policy_id = policy_id WHERE policy_id = NEW.id;
    ELSE
        UPDATE tier_assignment SET version_id = version_id WHERE version_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$
"""


def upgrade() -> None:
    for name in ("lean_head", "lean_tail", "lean_override"):
        op.add_column("tier_assignment", sa.Column(name, sa.Text(), nullable=True))
    op.execute(sa.text(FUNCTION.replace(":", "\\:")))  # its JSON text holds `":false`, not bind parameters
    op.execute(REWRITE)
    op.execute(
        "CREATE TRIGGER tier_assignment_lean BEFORE INSERT OR UPDATE ON tier_assignment "
        "FOR EACH ROW EXECUTE FUNCTION tier_assignment_lean()"
    )
    op.execute(
        "CREATE TRIGGER tier_policy_lean AFTER UPDATE OF key ON tier_policy FOR EACH ROW "
        "WHEN (OLD.key IS DISTINCT FROM NEW.key) EXECUTE FUNCTION tier_assignment_lean_rewrite()"
    )
    op.execute(
        "CREATE TRIGGER tier_policy_version_lean AFTER UPDATE OF version, downgrade_grace_days "
        "ON tier_policy_version FOR EACH ROW WHEN (OLD.version IS DISTINCT FROM NEW.version "
        "OR OLD.downgrade_grace_days IS DISTINCT FROM NEW.downgrade_grace_days) "
        "EXECUTE FUNCTION tier_assignment_lean_rewrite()"
    )
    op.execute("UPDATE tier_assignment SET version_id = version_id")
    op.alter_column("tier_assignment", "lean_head", nullable=False)
    op.alter_column("tier_assignment", "lean_tail", nullable=False)


def downgrade() -> None:
    op.execute("DROP TRIGGER tier_policy_version_lean ON tier_policy_version")
    op.execute("DROP TRIGGER tier_policy_lean ON tier_policy")
    op.execute("DROP TRIGGER tier_assignment_lean ON tier_assignment")
    op.execute("DROP FUNCTION tier_assignment_lean_rewrite()")
    op.execute("DROP FUNCTION tier_assignment_lean()")
    for name in ("lean_override", "lean_tail", "lean_head"):
        op.drop_column("tier_assignment", name)
