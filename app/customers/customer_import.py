"""The NDJSON customer import (POST /v1/customers/import): its lines checked set-based in the staging statement,
then merged into customer in one statement.

The lines are copied (COPY, binary) as they came into the transaction's staging table as jsonb, and one statement
checks every field of every line the way CustomerImportLine does and stages the lines that pass. It is
conservative: it passes only values it can tell CustomerImportLine takes, to the same value (times written as
RFC 3339 with seconds, offsets within what Postgres reads, no custom attributes, ...). Every line it does not pass,
and every line that could not be copied as jsonb, is validated by CustomerImportLine itself, so that its rejection
(line, JSON pointer, message) and what it stores are exactly what the model gives.
"""

import json
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import driver_connection
from app.core.errors import validation_errors
from app.core.strict import _DATE, DAY_PATTERN
from app.customers.schemas import CLOCK_SKEW, EXTERNAL_ID_PATTERN, CustomerImportLine
from app.customers.service import PROFILE_FIELDS, clean_attributes
from app.rules.custom_attributes import attribute_errors, attribute_types

LINE_FIELDS = ("customer_id", *PROFILE_FIELDS)
# The moments the staging statement passes: RFC 3339 with seconds, an upper-case T and Z, and offsets Postgres reads
# (up to 14 hours); each is a Timestamp (app.core.strict.TIME_PATTERN) of the same instant. Others go to the model.
SQL_TIME_PATTERN = (
    rf"^{_DATE}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{{1,6}})?(Z|[+-](0[0-9]|1[0-4]):[0-5][0-9])$"
)

_RAW, _INCOMING = "customer_import_raw", "customer_import_incoming"
_CREATE_STAGING = (
    text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_RAW} (line integer, body jsonb) ON COMMIT DROP"),
    text(f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {_INCOMING} (line integer, external_id text, segment text, display_name text,
    birth_date date, onboarded_at timestamptz, risk_level smallint, risk_assessed_at timestamptz,
    marketing_consent boolean, attributes jsonb) ON COMMIT DROP
"""),
)


def _moment(field: str) -> str:
    """SQL: the field is an RFC 3339 moment the statement passes, not later than :latest (a CASE: the cast runs
    only on text that matches)."""
    return (
        f"CASE WHEN jsonb_typeof(body -> '{field}') = 'string' AND body ->> '{field}' ~ :time_pattern "
        f"THEN (body ->> '{field}')::timestamptz <= :latest ELSE false END"
    )


def _absent_or_null(field: str) -> str:
    return f"coalesce(jsonb_typeof(body -> '{field}'), 'null') = 'null'"


_KNOWN = "ARRAY[" + ", ".join(f"'{name}'" for name in LINE_FIELDS) + "]::text[]"
# One pass over the copied lines: each checked as CustomerImportLine checks it (unknown fields, required fields,
# types, patterns, bounds, enums, risk_level needing risk_assessed_at); those that pass are staged, the line numbers
# of the others returned for the model to validate. The casts run on checked lines only (after the WHERE).
_CHECK_AND_STAGE = text(f"""
WITH objects AS (
    DELETE FROM {_RAW} RETURNING line, body, jsonb_typeof(body) = 'object' AS is_object
), checked AS (
    SELECT line, body, coalesce(CASE WHEN NOT is_object THEN false ELSE
        body - {_KNOWN} = '{{}}'::jsonb
        AND jsonb_typeof(body -> 'customer_id') = 'string' AND body ->> 'customer_id' ~ :external_id_pattern
        AND body -> 'segment' IN ('"retail"'::jsonb, '"small_business"'::jsonb)
        AND ({_absent_or_null("display_name")} OR jsonb_typeof(body -> 'display_name') = 'string'
             AND char_length(body ->> 'display_name') BETWEEN 1 AND 200)
        AND ({_absent_or_null("birth_date")} OR
             CASE WHEN jsonb_typeof(body -> 'birth_date') = 'string' AND body ->> 'birth_date' ~ :day_pattern
                  THEN (body ->> 'birth_date')::date <= :today ELSE false END)
        AND {_moment("onboarded_at")}
        AND ({_absent_or_null("risk_level")} OR
             CASE WHEN jsonb_typeof(body -> 'risk_level') = 'number'
                  THEN (body ->> 'risk_level')::numeric IN (1, 2, 3, 4, 5) ELSE false END)
        AND ({_absent_or_null("risk_assessed_at")} OR {_moment("risk_assessed_at")})
        AND ({_absent_or_null("risk_level")} OR NOT {_absent_or_null("risk_assessed_at")})
        AND coalesce(jsonb_typeof(body -> 'marketing_consent'), 'boolean') = 'boolean'
        AND coalesce(body -> 'attributes', '{{}}'::jsonb) = '{{}}'::jsonb
    END, false) AS passed
    FROM objects
), staged AS (
    INSERT INTO {_INCOMING} (line, external_id, segment, display_name, birth_date, onboarded_at, risk_level,
                             risk_assessed_at, marketing_consent, attributes)
    SELECT line, body ->> 'customer_id', body ->> 'segment', body ->> 'display_name', (body ->> 'birth_date')::date,
           (body ->> 'onboarded_at')::timestamptz, (body ->> 'risk_level')::numeric::smallint,
           (body ->> 'risk_assessed_at')::timestamptz, coalesce((body ->> 'marketing_consent')::boolean, false),
           '{{}}'::jsonb
    FROM checked WHERE passed
)
SELECT line FROM checked WHERE NOT passed ORDER BY line
""")

# Set-based upsert of the staged profiles, a customer's last staged line winning, in external id order (two imports
# of the same customers do not deadlock), emptying the staging (a second import in the transaction finds it empty).
_MERGE = text(f"""
WITH staged AS (DELETE FROM {_INCOMING} RETURNING *)
INSERT INTO customer AS c (external_id, segment, display_name, birth_date, onboarded_at, risk_level,
                           risk_assessed_at, marketing_consent, attributes)
SELECT DISTINCT ON (external_id) external_id, segment, display_name, birth_date, onboarded_at, risk_level,
       risk_assessed_at, marketing_consent, attributes
FROM staged ORDER BY external_id, line DESC
ON CONFLICT (external_id) DO UPDATE SET
    segment = excluded.segment, display_name = excluded.display_name, birth_date = excluded.birth_date,
    onboarded_at = excluded.onboarded_at, risk_level = excluded.risk_level,
    risk_assessed_at = excluded.risk_assessed_at, marketing_consent = excluded.marketing_consent,
    attributes = excluded.attributes, updated_at = now()
RETURNING id, xmax = 0 AS created
""")


def _copyable(raw: bytes) -> str | None:
    """The line as text for the jsonb staging column, or None when Postgres might refuse it or read it otherwise
    than the model does (invalid JSON or UTF-8, NaN, a NUL, an escaped NUL or surrogate): the model validates it."""
    if b"\x00" in raw or (b"\\u" in raw and (b"\\u0000" in raw or _escaped_surrogate(raw))):
        return None
    try:
        from_json(raw, allow_inf_nan=False)
        return raw.decode()
    except ValueError:  # also UnicodeDecodeError
        return None


def _escaped_surrogate(raw: bytes) -> bool:
    lowered = raw.lower()
    return any(f"\\ud{c}".encode() in lowered for c in "89abcdef")


class Checked:
    """The outcome of validating an import's lines: how many passed, the rejections, the lines the model passed."""

    def __init__(self) -> None:
        self.passed = 0
        self.rejections: list[dict] = []
        self.by_model: list[tuple[int, CustomerImportLine]] = []

    def validate(self, line_no: int, raw: bytes) -> None:
        """One line validated by the model (the lines the staging statement did not pass)."""
        try:
            self.by_model.append((line_no, CustomerImportLine.model_validate_json(raw)))
            self.passed += 1
        except ValidationError as exc:
            first = validation_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])[0]
            pointer = first.get("pointer") or None
            self.rejections.append({"line": line_no, "pointer": pointer, "detail": first["detail"]})


async def _stage_checked(session: AsyncSession, driver: Any, lines: list[tuple[int, bytes]], checked: Checked):
    """Copy the lines into the raw staging, check them in SQL and stage those that pass; the model validates the
    others. A copy Postgres refuses (a line _copyable could not tell) leaves every line to the model."""
    raw_by_line = dict(lines)
    records = []
    for line_no, raw in lines:
        if (body := _copyable(raw)) is None:
            checked.validate(line_no, raw)
        else:
            records.append((line_no, body))
    if not records:
        return
    await driver.execute("SAVEPOINT customer_import_copy")
    try:
        await driver.copy_records_to_table(_RAW, records=records, columns=["line", "body"])
    except Exception:  # noqa: BLE001 (any value Postgres refuses: the model gives the line's rejection)
        await driver.execute("ROLLBACK TO SAVEPOINT customer_import_copy")
        for line_no, _ in records:
            checked.validate(line_no, raw_by_line[line_no])
        return
    finally:
        await driver.execute("RELEASE SAVEPOINT customer_import_copy")
    flagged = await session.scalars(
        _CHECK_AND_STAGE,
        {
            "external_id_pattern": EXTERNAL_ID_PATTERN,
            "day_pattern": DAY_PATTERN,
            "time_pattern": SQL_TIME_PATTERN,
            "today": date.today(),
            "latest": datetime.now(UTC) + CLOCK_SKEW,
        },
    )
    flagged_lines = flagged.all()
    checked.passed += len(records) - len(flagged_lines)
    for line_no in flagged_lines:
        checked.validate(line_no, raw_by_line[line_no])


async def import_lines(
    session: AsyncSession, lines: list[tuple[int, bytes]]
) -> tuple[int, int, int, list[dict], list[int]]:
    """Validate and upsert an import's non-blank lines (line number, bytes): (accepted, created, updated,
    rejections sorted by line, the ids of the customers written). A customer's last accepted line wins; a line
    with an undeclared or mistyped custom attribute is rejected by its first one."""
    for statement in _CREATE_STAGING:  # through the session: the transaction has begun before the driver's COPY
        await session.execute(statement)
    driver = await driver_connection(session)
    checked = Checked()
    await _stage_checked(session, driver, lines, checked)
    rejections = checked.rejections
    records = []
    if checked.by_model:
        definitions = await attribute_types(session)
        for line_no, line in checked.by_model:
            if errors := attribute_errors(line.attributes, definitions):
                rejections.append({"line": line_no, **errors[0]})
            else:
                attributes = json.dumps(clean_attributes(line.attributes))
                values = (getattr(line, field) for field in PROFILE_FIELDS[:-1])
                records.append((line_no, line.customer_id, *values, attributes))
    accepted = checked.passed - (len(checked.by_model) - len(records))
    if records:
        await driver.copy_records_to_table(_INCOMING, records=records, columns=["line", "external_id", *PROFILE_FIELDS])
    rows = (await session.execute(_MERGE)).all() if accepted else []
    created = sum(1 for row in rows if row.created)
    rejections.sort(key=lambda r: r["line"])
    return accepted, created, len(rows) - created, rejections, [row.id for row in rows]
