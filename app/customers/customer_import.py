"""The NDJSON customer import (POST /v1/customers/import): its lines checked in Python by a per-field check that
passes only what CustomerImportLine takes, to the same value, then merged into customer by one statement.

The check (`fast_line`) is conservative: it parses the line once (pydantic_core's JSON parser, the one the model
uses) and passes only values it can tell the model takes to the same value (moments written as RFC 3339 with
seconds, an upper-case T and Z or an offset; days YYYY-MM-DD; integers written as integers; no custom attributes;
...). Every line it does not pass is validated by CustomerImportLine itself, so that its rejection (line, JSON
pointer, message) and what it stores are exactly what the model gives. The lines that pass either way are sent to
Postgres as one JSON array, a passed line as it came and a line the model took as the model's values, which the
statement reads with Postgres' own JSON parser (one text parameter: encoding ten arrays of 5,000 values cost the
server's Python more than the whole check) and upserts, also marking the customers for the re-tiering worker.
"""

import json
import re
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from app.core.errors import validation_errors
from app.core.strict import EARLIEST_YEAR, LATEST_YEAR
from app.customers.locks import share_spans_sql
from app.customers.retier import mark_set_written_sql
from app.customers.schemas import CLOCK_SKEW, CustomerImportLine
from app.customers.service import PROFILE_FIELDS, clean_attributes
from app.rules.custom_attributes import attribute_errors, attribute_types

LINE_FIELDS = ("customer_id", *PROFILE_FIELDS)
_TYPES = ("text", "text", "text", "date", "timestamptz", "smallint", "timestamptz", "boolean", "jsonb")
# The lines' fields as the statement reads them from :lines, a JSON array of the lines in line order: a field left
# out is null (marketing_consent and attributes then take the model's defaults in the statement); a key given twice
# is read as its last value, as pydantic_core reads it.
INCOMING_SQL = (
    "ROWS FROM (json_to_recordset(CAST(:lines AS json)) AS ("
    + ", ".join(f"{name} {kind}" for name, kind in zip(LINE_FIELDS, _TYPES, strict=True))
    + f")) WITH ORDINALITY AS incoming(external_id, {', '.join(PROFILE_FIELDS)}, line)"
)
# Every customer merged is marked for the re-tiering worker (app.customers.retier: one mark set holding their ids)
# and its span shared (app.customers.locks.share_spans: the upsert has locked the rows it updated, a row it inserted
# is its own until commit) by the same statement, which returns counts and the ids of those updated, not a row a
# customer. A customer's last line wins; in external id order (two imports of the same customers do not deadlock).
# Each external id is claimed first in customer_external_id (the map holds external ids unique), as
# app.customers.service._claimed_id claims one: the ids it names already are locked (an erasure deletes its row
# first: one erased meanwhile is not found, and is claimed anew); the others get a new customer id from the
# sequence (looked up once, an InitPlan: pg_get_serial_sequence per row cost more than the map's insert), or the one
# a concurrent import has just claimed. Known ids are only locked, so a re-run writes no new row version of the map
# and draws no id from the sequence.
_MERGE = text(f"""
WITH lines AS (
    SELECT DISTINCT ON (external_id) * FROM {INCOMING_SQL} ORDER BY external_id, line DESC
), known AS (
    SELECT external_id, customer_id FROM customer_external_id
    WHERE external_id IN (SELECT external_id FROM lines) ORDER BY external_id FOR UPDATE
), claimed AS (
    INSERT INTO customer_external_id AS m (external_id, customer_id)
    SELECT external_id, nextval((SELECT pg_get_serial_sequence('customer', 'id'))::regclass) FROM lines
    WHERE external_id NOT IN (SELECT external_id FROM known) ORDER BY external_id
    ON CONFLICT (external_id) DO UPDATE SET customer_id = m.customer_id
    RETURNING external_id, customer_id
), merged AS (
    INSERT INTO customer AS c (id, external_id, segment, display_name, birth_date, onboarded_at, risk_level,
                               risk_assessed_at, marketing_consent, attributes)
    SELECT customer_id, external_id, segment, display_name, birth_date, onboarded_at, risk_level,
           risk_assessed_at, coalesce(marketing_consent, false), coalesce(attributes, '{{}}')
    FROM lines JOIN (SELECT * FROM known UNION ALL SELECT * FROM claimed) AS ids USING (external_id)
    ORDER BY external_id
    ON CONFLICT (id) DO UPDATE SET
        segment = excluded.segment, display_name = excluded.display_name, birth_date = excluded.birth_date,
        onboarded_at = excluded.onboarded_at, risk_level = excluded.risk_level,
        risk_assessed_at = excluded.risk_assessed_at, marketing_consent = excluded.marketing_consent,
        attributes = excluded.attributes, updated_at = now()
    RETURNING id, xmax = 0 AS created
), marked AS ({mark_set_written_sql("merged")}
), spans AS ({share_spans_sql("merged")})
SELECT count(*) FILTER (WHERE created) AS created, count(*) FILTER (WHERE NOT created) AS updated,
       coalesce(array_agg(id) FILTER (WHERE NOT created), '{{}}') AS updated_ids, (SELECT * FROM spans) AS spans
FROM merged
""")

# What the check passes of dates and moments, told by their digits' shape (app.core.strict.DAY_PATTERN and
# TIME_PATTERN, narrower): days YYYY-MM-DD; moments with seconds, up to 6 decimals, an upper-case T and Z or an
# offset of hours 00..15 and minutes 00..59 (Postgres' bound on an offset; the model takes up to 23:59, and a line it
# takes is sent with its moments in UTC). That the day exists (no 02-30, 1900-02-29), hours 00..23, minutes and
# seconds 00..59 (no leap second): datetime.fromisoformat, which refuses the others; years 1900..2100 as written.
_ZEROS = str.maketrans("0123456789", "0000000000")
_DAY_SHAPE = "0000-00-00"
_MOMENT_SHAPE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?(?:Z|[+-][0-9]{2}:[0-9]{2})"
)
_YEARS = (f"{EARLIEST_YEAR:04d}", f"{LATEST_YEAR:04d}")
_EXTERNAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}").fullmatch  # EXTERNAL_ID_PATTERN, to the very end
_KNOWN = frozenset(LINE_FIELDS)
_SEGMENTS = frozenset(("retail", "small_business"))


def _moment(value: Any, latest: datetime) -> datetime | None:
    """The moment a line's text gives, if the check passes it and it is not after `latest`; else None."""
    if type(value) is not str or not _MOMENT_SHAPE.fullmatch(value):
        return None
    if not _YEARS[0] <= value[:4] <= _YEARS[1] or (value[-1] != "Z" and (value[-5:-3] > "15" or value[-2] > "5")):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment <= latest else None


def fast_line(raw: bytes, today: str, latest: datetime) -> tuple | None:
    """A line's values as CustomerImportLine reads them (customer id, then PROFILE_FIELDS, attributes as JSON), if
    the check passes it; None for the model to judge. `today`: date.today() in ISO form; `latest`: now + CLOCK_SKEW.
    The statement reads a passed line itself (INCOMING_SQL), to these values (tests/test_customer_import_sql.py).
    Only keys are cached by the parser: a file's values are mostly unique, and caching them tripled the parse."""
    try:
        doc = from_json(raw, allow_inf_nan=False, cache_strings="keys")
    except ValueError:
        return None
    if type(doc) is not dict or not doc.keys() <= _KNOWN:
        return None
    get = doc.get
    external_id, segment, name = get("customer_id"), get("segment"), get("display_name")
    if type(external_id) is not str or not _EXTERNAL_ID(external_id) or type(segment) is not str:
        return None
    if segment not in _SEGMENTS:
        return None
    if name is not None and (type(name) is not str or not 1 <= len(name) <= 200 or "\x00" in name):
        return None
    if name is not None and not name.isascii():
        try:
            name.encode()
        except UnicodeEncodeError:  # a lone surrogate: the model's answer
            return None
    if (birth := get("birth_date")) is not None:
        if type(birth) is not str or birth.translate(_ZEROS) != _DAY_SHAPE or not _YEARS[0] <= birth <= today:
            return None
        try:
            birth = date.fromisoformat(birth)
        except ValueError:
            return None
    if (onboarded := _moment(get("onboarded_at"), latest)) is None:
        return None
    risk, assessed = get("risk_level"), get("risk_assessed_at")
    if risk is not None and (type(risk) is not int or not 1 <= risk <= 5):
        return None
    if assessed is not None and (assessed := _moment(assessed, latest)) is None:
        return None
    if (risk is not None and assessed is None) or type(consent := get("marketing_consent", False)) is not bool:
        return None
    if get("attributes", {}) != {}:
        return None
    return (external_id, segment, name, birth, onboarded, risk, assessed, consent, "{}")


def _model_line(line_no: int, raw: bytes, definitions: dict, rejections: list[dict]) -> bytes | None:
    """A line the check did not pass, validated by the model: the model's values as a JSON object (read as
    INCOMING_SQL reads a line), or None with its first error appended to `rejections`."""
    try:
        line = CustomerImportLine.model_validate_json(raw)
    except ValidationError as exc:
        first = validation_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])[0]
        rejections.append({"line": line_no, "pointer": first.get("pointer") or None, "detail": first["detail"]})
        return None
    if errors := attribute_errors(line.attributes, definitions):
        rejections.append({"line": line_no, **errors[0]})
        return None
    values = {field: getattr(line, field) for field in LINE_FIELDS}
    values["attributes"] = clean_attributes(line.attributes)
    return json.dumps(values, default=_iso).encode()


def _iso(value: date) -> str:
    """A day, or a moment in UTC (Postgres refuses offsets past 15:59, which the model takes)."""
    return value.astimezone(UTC).isoformat() if isinstance(value, datetime) else value.isoformat()


async def import_lines(
    session: AsyncSession, lines: list[tuple[int, bytes]]
) -> tuple[int, int, int, list[dict], list[int]]:
    """Validate and upsert an import's non-blank lines (line number, bytes), marking the customers for the
    re-tiering worker and sharing their spans: (accepted, created, updated, rejections sorted by line, the ids of
    the customers updated). A customer's last accepted line wins; a line
    with an undeclared or mistyped custom attribute is rejected by its first one."""
    today, latest = date.today().isoformat(), datetime.now(UTC) + CLOCK_SKEW
    accepted, to_model, rejections = [], [], []
    for line_no, raw in lines:
        if fast_line(raw, today, latest) is None:
            to_model.append((line_no, raw))
        else:
            accepted.append((line_no, raw))
    if to_model:
        definitions = await attribute_types(session)
        for line_no, raw in to_model:
            if (document := _model_line(line_no, raw, definitions, rejections)) is not None:
                accepted.append((line_no, document))
        accepted.sort(key=lambda line: line[0])  # in line order: a customer's last line wins
    rejections.sort(key=lambda r: r["line"])
    if not accepted:
        return 0, 0, 0, rejections, []
    document = b"[" + b",".join(raw for _, raw in accepted) + b"]"
    merged = (await session.execute(_MERGE, {"lines": document.decode()})).one()
    return len(accepted), merged.created, merged.updated, rejections, merged.updated_ids


async def warm_up(conn: AsyncConnection) -> None:
    """The merge statement run on nothing (no line: it writes no row, draws no id), in the caller's transaction, to
    be rolled back: the connection has it prepared and the server its tables' catalog entries cached before an
    import's first request (app.core.db.warm_pool)."""
    await conn.execute(_MERGE, {"lines": "[]"})
