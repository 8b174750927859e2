"""The NDJSON customer import (POST /v1/customers/import): its lines checked in Python by a per-field check that
passes only what CustomerImportLine takes, to the same value, then merged into customer by one statement.

The check (`fast_line`) is conservative: it parses the line once (pydantic_core's JSON parser, the one the model
uses) and passes only values it can tell the model takes to the same value (moments written as RFC 3339 with
seconds, an upper-case T and Z or an offset; days YYYY-MM-DD; integers written as integers; no custom attributes;
...). Every line it does not pass is validated by CustomerImportLine itself, so that its rejection (line, JSON
pointer, message) and what it stores are exactly what the model gives. The lines that pass either way are sent to
Postgres as one array a column (binary, no staging table) and upserted by one statement, which also marks the
customers for the re-tiering worker.
"""

import json
import re
from datetime import UTC, date, datetime
from typing import Any

from pydantic import ValidationError
from pydantic_core import from_json
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import validation_errors
from app.core.strict import EARLIEST_YEAR, LATEST_YEAR
from app.customers.locks import share_spans_sql
from app.customers.retier import mark_written_sql
from app.customers.schemas import CLOCK_SKEW, CustomerImportLine
from app.customers.service import PROFILE_FIELDS, clean_attributes
from app.rules.custom_attributes import attribute_errors, attribute_types

LINE_FIELDS = ("customer_id", *PROFILE_FIELDS)
_COLUMNS = ("line", "external_id", *PROFILE_FIELDS)
_TYPES = ("int", "text", "text", "text", "date", "timestamptz", "smallint", "timestamptz", "boolean", "jsonb")
_UNNEST = ", ".join(f"CAST(:{name} AS {kind}[])" for name, kind in zip(_COLUMNS, _TYPES, strict=True))
# Every customer merged is marked for the re-tiering worker (app.customers.retier) and its span shared
# (app.customers.locks.share_spans: the upsert has locked the rows it updated, a row it inserted is its own until
# commit) by the same statement, which returns counts and the ids of those updated, not a row a customer. A
# customer's last line wins; in external id order (two imports of the same customers do not deadlock). Each
# external id is claimed first in customer_external_id, as app.customers.service._claimed_id claims one (the map
# holds external ids unique): a new customer id from the sequence, in external id order, or the one it names.
_MERGE = text(f"""
WITH claimed AS (
    INSERT INTO customer_external_id AS m (external_id, customer_id)
    SELECT external_id, nextval(pg_get_serial_sequence('customer', 'id'))
    FROM (SELECT DISTINCT external_id FROM unnest(CAST(:external_id AS text[])) AS e(external_id) ORDER BY 1) AS e
    ON CONFLICT (external_id) DO UPDATE SET customer_id = m.customer_id
    RETURNING external_id, customer_id
), merged AS (
    INSERT INTO customer AS c (id, external_id, segment, display_name, birth_date, onboarded_at, risk_level,
                               risk_assessed_at, marketing_consent, attributes)
    SELECT DISTINCT ON (external_id) customer_id, external_id, segment, display_name, birth_date, onboarded_at,
           risk_level, risk_assessed_at, marketing_consent, attributes
    FROM unnest({_UNNEST}) AS incoming({", ".join(_COLUMNS)}) JOIN claimed USING (external_id)
    ORDER BY external_id, line DESC
    ON CONFLICT (id) DO UPDATE SET
        segment = excluded.segment, display_name = excluded.display_name, birth_date = excluded.birth_date,
        onboarded_at = excluded.onboarded_at, risk_level = excluded.risk_level,
        risk_assessed_at = excluded.risk_assessed_at, marketing_consent = excluded.marketing_consent,
        attributes = excluded.attributes, updated_at = now()
    RETURNING id, xmax = 0 AS created
), marked AS ({mark_written_sql("merged")}
), spans AS ({share_spans_sql("merged")})
SELECT count(*) FILTER (WHERE created) AS created, count(*) FILTER (WHERE NOT created) AS updated,
       coalesce(array_agg(id) FILTER (WHERE NOT created), '{{}}') AS updated_ids, (SELECT * FROM spans) AS spans
FROM merged
""")

# What the check passes of dates and moments, told by their digits' shape (app.core.strict.DAY_PATTERN and
# TIME_PATTERN, narrower): days YYYY-MM-DD; moments with seconds, up to 6 decimals, an upper-case T and Z or an
# offset of hours 00..23 and minutes 00..59. That the day exists (no 02-30, 1900-02-29), hours 00..23, minutes and
# seconds 00..59 (no leap second): datetime.fromisoformat, which refuses the others; years 1900..2100 as written.
_ZEROS = str.maketrans("0123456789", "0000000000")
_DAY_SHAPE = "0000-00-00"
_MOMENT_SHAPES = frozenset(
    f"{_DAY_SHAPE}T00:00:00{fraction}{zone}"
    for fraction in ("", *("." + "0" * digits for digits in range(1, 7)))
    for zone in ("Z", "+00:00", "-00:00")
)
_YEARS = (f"{EARLIEST_YEAR:04d}", f"{LATEST_YEAR:04d}")
_EXTERNAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}").fullmatch  # EXTERNAL_ID_PATTERN, to the very end
_KNOWN = frozenset(LINE_FIELDS)
_SEGMENTS = frozenset(("retail", "small_business"))


def _moment(value: Any, latest: datetime) -> datetime | None:
    """The moment a line's text gives, if the check passes it and it is not after `latest`; else None."""
    if type(value) is not str or value.translate(_ZEROS) not in _MOMENT_SHAPES:
        return None
    if not _YEARS[0] <= value[:4] <= _YEARS[1] or (value[-1] != "Z" and (value[-5:-3] > "23" or value[-2] > "5")):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment <= latest else None


def fast_line(raw: bytes, today: str, latest: datetime) -> tuple | None:
    """A line's values as CustomerImportLine reads them (customer id, then PROFILE_FIELDS, attributes as JSON), if
    the check passes it; None for the model to judge. `today`: date.today() in ISO form; `latest`: now + CLOCK_SKEW."""
    try:
        doc = from_json(raw, allow_inf_nan=False)
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


def _model_line(line_no: int, raw: bytes, definitions: dict, rejections: list[dict]) -> tuple | None:
    """A line the check did not pass, validated by the model: its values (as fast_line gives them), or None with
    its first error appended to `rejections`."""
    try:
        line = CustomerImportLine.model_validate_json(raw)
    except ValidationError as exc:
        first = validation_errors([{**e, "loc": ("body", *e["loc"])} for e in exc.errors()])[0]
        rejections.append({"line": line_no, "pointer": first.get("pointer") or None, "detail": first["detail"]})
        return None
    if errors := attribute_errors(line.attributes, definitions):
        rejections.append({"line": line_no, **errors[0]})
        return None
    values = (getattr(line, field) for field in PROFILE_FIELDS[:-1])
    return (line.customer_id, *values, json.dumps(clean_attributes(line.attributes)))


async def import_lines(
    session: AsyncSession, lines: list[tuple[int, bytes]]
) -> tuple[int, int, int, list[dict], list[int]]:
    """Validate and upsert an import's non-blank lines (line number, bytes), marking the customers for the
    re-tiering worker and sharing their spans: (accepted, created, updated, rejections sorted by line, the ids of
    the customers updated). A customer's last accepted line wins; a line
    with an undeclared or mistyped custom attribute is rejected by its first one."""
    today, latest = date.today().isoformat(), datetime.now(UTC) + CLOCK_SKEW
    records, to_model, rejections = [], [], []
    for line_no, raw in lines:
        if (values := fast_line(raw, today, latest)) is None:
            to_model.append((line_no, raw))
        else:
            records.append((line_no, *values))
    if to_model:
        definitions = await attribute_types(session)
        for line_no, raw in to_model:
            if (values := _model_line(line_no, raw, definitions, rejections)) is not None:
                records.append((line_no, *values))
    rejections.sort(key=lambda r: r["line"])
    if not records:
        return 0, 0, 0, rejections, []
    columns = dict(zip(_COLUMNS, (list(column) for column in zip(*records, strict=True)), strict=True))
    merged = (await session.execute(_MERGE, columns)).one()
    return len(records), merged.created, merged.updated, rejections, merged.updated_ids
