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
from app.customers.retier import mark_written_sql
from app.customers.schemas import CLOCK_SKEW, CustomerImportLine
from app.customers.service import PROFILE_FIELDS, clean_attributes
from app.rules.custom_attributes import attribute_errors, attribute_types

LINE_FIELDS = ("customer_id", *PROFILE_FIELDS)
# The staging tables: a connection's own, created on its first import and emptied at each commit (a table dropped
# at commit would be created again by every import; dead rows of a table kept are never vacuumed).
_RAW, _INCOMING = "customer_import_raw", "customer_import_incoming"
_CREATE_STAGING = (
    text(f"CREATE TEMPORARY TABLE IF NOT EXISTS {_RAW} (line integer, body jsonb) ON COMMIT DELETE ROWS"),
    text(f"""
CREATE TEMPORARY TABLE IF NOT EXISTS {_INCOMING} (line integer, external_id text, segment text, display_name text,
    birth_date date, onboarded_at timestamptz, risk_level smallint, risk_assessed_at timestamptz,
    marketing_consent boolean, attributes jsonb) ON COMMIT DELETE ROWS
"""),
)


_UPSERT = """
ON CONFLICT (external_id) DO UPDATE SET
    segment = excluded.segment, display_name = excluded.display_name, birth_date = excluded.birth_date,
    onboarded_at = excluded.onboarded_at, risk_level = excluded.risk_level,
    risk_assessed_at = excluded.risk_assessed_at, marketing_consent = excluded.marketing_consent,
    attributes = excluded.attributes, updated_at = now()
RETURNING id, xmax = 0 AS created"""
# Every customer merged is marked for the re-tiering worker (app.customers.retier) by the same statement.
_MERGE = text(f"""
WITH staged AS (DELETE FROM {_INCOMING} RETURNING *), merged AS (
    INSERT INTO customer AS c (external_id, segment, display_name, birth_date, onboarded_at, risk_level,
                               risk_assessed_at, marketing_consent, attributes)
    SELECT DISTINCT ON (external_id) external_id, segment, display_name, birth_date, onboarded_at, risk_level,
           risk_assessed_at, marketing_consent, attributes
    FROM staged ORDER BY external_id, line DESC
    {_UPSERT}
), marked AS ({mark_written_sql("merged")})
SELECT id, created FROM merged
""")

# What the staging statement passes of dates and moments, checked by their digits (Postgres' regular expressions
# cost several microseconds a value): days YYYY-MM-DD that exist, years 1900..2100 (app.core.strict.DAY_PATTERN);
# moments RFC 3339 with seconds, up to 6 decimals, an upper-case T and Z or an offset up to 14:59 (what Postgres
# reads), hours 00..23, no leap second: each a Timestamp (app.core.strict.TIME_PATTERN) of the same instant.
_DAY_SHAPE = "0000-00-00"
_MOMENT_SHAPES = ", ".join(
    f"'{_DAY_SHAPE}T00:00:00{fraction}{zone}'"
    for fraction in ("", *("." + "0" * digits for digits in range(1, 7)))
    for zone in ("Z", "+00:00", "-00:00")
)


def _shape(value: str) -> str:
    return f"translate({value}, '0123456789', '0000000000')"


def _day_exists(value: str) -> str:
    """SQL: the YYYY-MM-DD at the start of `value` (digits where the shape has them) is a day of 1900..2100."""
    year, month, day = (f"substr({value}, {start}, {length})::int" for start, length in ((1, 4), (6, 2), (9, 2)))
    leap = f"{year} % 4 = 0 AND ({year} % 100 <> 0 OR {year} % 400 = 0)"
    days = f"CASE WHEN {month} IN (4, 6, 9, 11) THEN 30 WHEN {month} <> 2 THEN 31 WHEN {leap} THEN 29 ELSE 28 END"
    return f"{year} BETWEEN 1900 AND 2100 AND {month} BETWEEN 1 AND 12 AND {day} BETWEEN 1 AND {days}"


def _day(field: str) -> str:
    """SQL: the line's field is absent, null or a day passed, not after :today (each cast runs on checked text)."""
    value = f"f_{field}"
    return (
        f"CASE WHEN t_{field} IS NULL OR t_{field} = 'null' THEN true WHEN t_{field} <> 'string' THEN false "
        f"WHEN {_shape(value)} <> '{_DAY_SHAPE}' THEN false WHEN NOT ({_day_exists(value)}) THEN false "
        f"ELSE {value}::date <= :today END"
    )


def _moment(field: str, *, required: bool) -> str:
    """SQL: the line's field is a moment passed (or absent or null, unless required), not after :latest."""
    value = f"f_{field}"
    offset = (
        f"CASE WHEN right({value}, 1) = 'Z' THEN true "
        f"ELSE substr({value}, char_length({value}) - 4, 2)::int <= 14 AND right({value}, 2)::int <= 59 END"
    )
    clock = f"substr({value}, 12, 2)::int <= 23 AND substr({value}, 15, 2)::int <= 59"
    return (
        f"CASE WHEN t_{field} IS NULL OR t_{field} = 'null' THEN {'false' if required else 'true'} "
        f"WHEN t_{field} <> 'string' THEN false WHEN {_shape(value)} NOT IN ({_MOMENT_SHAPES}) THEN false "
        f"WHEN NOT ({_day_exists(value)} AND {clock} AND substr({value}, 18, 2)::int <= 59 AND {offset}) "
        f"THEN false ELSE {value}::timestamptz <= :latest END"
    )


def _absent_or_null(field: str) -> str:
    return f"coalesce(t_{field}, 'null') = 'null'"


_KNOWN = "ARRAY[" + ", ".join(f"'{name}'" for name in LINE_FIELDS) + "]::text[]"
_EXTRACTED = ", ".join(
    f"body ->> '{name}' AS f_{name}, jsonb_typeof(body -> '{name}') AS t_{name}" for name in LINE_FIELDS
)
# One pass over the copied lines, each field read once: each line checked as CustomerImportLine checks it (unknown
# fields, required fields, types, patterns, bounds, enums, risk_level needing risk_assessed_at); those that pass
# are staged, the line numbers of the others returned for the model to validate. The external id's pattern is
# EXTERNAL_ID_PATTERN with its length apart (a bounded repetition is slow in Postgres). The casts run on checked
# lines only (after the WHERE).
_CHECK_AND_STAGE = text(f"""
WITH lines AS (
    DELETE FROM {_RAW} RETURNING line, body, jsonb_typeof(body) AS kind, {_EXTRACTED}
), checked AS (
    SELECT *, coalesce(CASE WHEN kind <> 'object' THEN false ELSE
        body - {_KNOWN} = '{{}}'::jsonb
        AND t_customer_id = 'string' AND f_customer_id ~ '^[A-Za-z0-9][A-Za-z0-9._:\\-]*$'
        AND char_length(f_customer_id) <= 64
        AND t_segment = 'string' AND f_segment IN ('retail', 'small_business')
        AND ({_absent_or_null("display_name")} OR t_display_name = 'string'
             AND char_length(f_display_name) BETWEEN 1 AND 200)
        AND {_day("birth_date")}
        AND {_moment("onboarded_at", required=True)}
        AND ({_absent_or_null("risk_level")} OR
             CASE WHEN t_risk_level = 'number' THEN f_risk_level::numeric IN (1, 2, 3, 4, 5) ELSE false END)
        AND {_moment("risk_assessed_at", required=False)}
        AND ({_absent_or_null("risk_level")} OR NOT {_absent_or_null("risk_assessed_at")})
        AND coalesce(t_marketing_consent, 'boolean') = 'boolean'
        AND coalesce(body -> 'attributes', '{{}}'::jsonb) = '{{}}'::jsonb
    END, false) AS passed
    FROM lines
), flagged AS (
    SELECT line FROM checked WHERE NOT passed
), typed AS (
    SELECT line, f_customer_id AS external_id, f_segment AS segment, f_display_name AS display_name,
           f_birth_date::date AS birth_date, f_onboarded_at::timestamptz AS onboarded_at,
           f_risk_level::numeric::smallint AS risk_level, f_risk_assessed_at::timestamptz AS risk_assessed_at,
           coalesce(f_marketing_consent::boolean, false) AS marketing_consent, '{{}}'::jsonb AS attributes
    FROM checked WHERE passed
), merged AS (  -- every line is here and passed: merged at once, a customer's last line winning
    INSERT INTO customer AS c (external_id, segment, display_name, birth_date, onboarded_at, risk_level,
                               risk_assessed_at, marketing_consent, attributes)
    SELECT DISTINCT ON (external_id) external_id, segment, display_name, birth_date, onboarded_at, risk_level,
           risk_assessed_at, marketing_consent, attributes
    FROM typed WHERE :whole AND NOT EXISTS (SELECT FROM flagged) ORDER BY external_id, line DESC
    {_UPSERT}
), marked AS ({mark_written_sql("merged")}
), staged AS (  -- else staged, to be merged with the lines the model passes
    INSERT INTO {_INCOMING} SELECT * FROM typed WHERE NOT (:whole AND NOT EXISTS (SELECT FROM flagged))
)
SELECT line, NULL::bigint AS id, NULL::boolean AS created FROM flagged
UNION ALL SELECT NULL, id, created FROM merged
""")

# Set-based upsert of the staged profiles, a customer's last staged line winning, in external id order (two imports
# of the same customers do not deadlock), emptying the staging (a second import in the transaction finds it empty).


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
        self.merged: list = []  # (id, created) of the customers the staging statement merged (every line passed)

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
    """Copy the lines into the raw staging, check them in SQL and stage those that pass (or merge them, when every
    line of the import passes); the model validates the others. A copy Postgres refuses (a line _copyable could not
    tell) leaves every line to the model."""
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
    parameters = {"today": date.today(), "latest": datetime.now(UTC) + CLOCK_SKEW, "whole": not checked.by_model}
    rows = (await session.execute(_CHECK_AND_STAGE, parameters)).all()
    flagged_lines = [row.line for row in rows if row.line is not None]
    checked.passed += len(records) - len(flagged_lines)
    checked.merged = [row for row in rows if row.line is None]
    for line_no in flagged_lines:
        checked.validate(line_no, raw_by_line[line_no])


async def import_lines(
    session: AsyncSession, lines: list[tuple[int, bytes]]
) -> tuple[int, int, int, list[dict], list[tuple[int, bool]]]:
    """Validate and upsert an import's non-blank lines (line number, bytes): (accepted, created, updated,
    rejections sorted by line, (id, created) of each customer written). A customer's last accepted line wins; a line
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
    rows = checked.merged or ((await session.execute(_MERGE)).all() if accepted else [])
    created = sum(1 for row in rows if row.created)
    rejections.sort(key=lambda r: r["line"])
    return accepted, created, len(rows) - created, rejections, [(row.id, row.created) for row in rows]
