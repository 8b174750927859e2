"""The NDJSON customer import (POST /v1/customers/import): its lines checked by a check that passes only what
CustomerImportLine takes, to the same value, then merged into customer by one statement.

The check (`_checked`) is conservative: one call into pydantic-core (the JSON parser the model uses, and Rust
regexes) reads a line into a typed dict of exactly the fields and shapes it can tell the model takes to the same
value (moments written as RFC 3339 with seconds, an upper-case T and Z or an offset; days YYYY-MM-DD; integers
written as integers; no custom attributes; ...), then what a pattern cannot say is checked in Python. Every line it
does not pass is validated by CustomerImportLine itself, so that its rejection (line, JSON pointer, message) and
what it stores are exactly what the model gives. The lines that pass either way are sent to Postgres as one JSON
array, a passed line as it came and a line the model took as the model's values, which the statement reads with
Postgres' own JSON parser (one text parameter: encoding ten arrays of 5,000 values cost the server's Python more
than the whole check) and upserts, also marking the customers for the re-tiering worker.
"""

import json
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, NotRequired

from pydantic import ConfigDict, Field, StringConstraints, TypeAdapter, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from typing_extensions import TypedDict

from app.core.db import unique_or_raise
from app.core.errors import validation_errors
from app.core.strict import DAY
from app.customers.locks import share_spans_sql
from app.customers.retier import mark_set_written_sql
from app.customers.schemas import CLOCK_SKEW, EXTERNAL_ID_PATTERN, CustomerImportLine
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
_LINES_AND_KNOWN = f"""
WITH lines AS (
    SELECT DISTINCT ON (external_id) * FROM {INCOMING_SQL} ORDER BY external_id, line DESC
), known AS (
    SELECT external_id, customer_id FROM customer_external_id
    WHERE external_id IN (SELECT external_id FROM lines) ORDER BY external_id FOR UPDATE
)"""
_NEW_IDS = """
    SELECT external_id, nextval((SELECT pg_get_serial_sequence('customer', 'id'))::regclass) FROM lines
    WHERE external_id NOT IN (SELECT external_id FROM known) ORDER BY external_id"""
_INTO_CUSTOMER = """
    INSERT INTO customer AS c (id, external_id, segment, display_name, birth_date, onboarded_at, risk_level,
                               risk_assessed_at, marketing_consent, attributes)
    SELECT customer_id, external_id, segment, display_name, birth_date, onboarded_at, risk_level,
           risk_assessed_at, coalesce(marketing_consent, false), coalesce(attributes, '{}')"""
_UPSERT = """
    ON CONFLICT (id) DO UPDATE SET
        segment = excluded.segment, display_name = excluded.display_name, birth_date = excluded.birth_date,
        onboarded_at = excluded.onboarded_at, risk_level = excluded.risk_level,
        risk_assessed_at = excluded.risk_assessed_at, marketing_consent = excluded.marketing_consent,
        attributes = excluded.attributes, updated_at = now()
    RETURNING id, xmax = 0 AS created"""
_MARKED_AND_COUNTED = f"""
), marked AS ({mark_set_written_sql("merged")}
), spans AS ({share_spans_sql("merged")})
SELECT count(*) FILTER (WHERE created) AS created, count(*) FILTER (WHERE NOT created) AS updated,
       coalesce(array_agg(id) FILTER (WHERE NOT created), '{{}}') AS updated_ids, (SELECT * FROM spans) AS spans
FROM merged
"""
_MERGE = text(f"""{_LINES_AND_KNOWN}, claimed AS (
    INSERT INTO customer_external_id AS m (external_id, customer_id){_NEW_IDS}
    ON CONFLICT (external_id) DO UPDATE SET customer_id = m.customer_id
    RETURNING external_id, customer_id
), merged AS ({_INTO_CUSTOMER}
    FROM lines JOIN (SELECT * FROM known UNION ALL SELECT * FROM claimed) AS ids USING (external_id)
    ORDER BY external_id{_UPSERT}{_MARKED_AND_COUNTED}""")
# The same merge when no other transaction claims one of the same new external ids meanwhile (every import but one
# racing another for them, or an erasure committing between the lookup and the insert): the new ids drawn their
# customer ids once (`new`, materialized: a CTE read twice), in external id order, and inserted into the map and their
# customers into customer as plain inserts, without ON CONFLICT's speculative insertion (a pre-check of the unique
# index and a confirmation a row, in both tables), RETURNING and a join back to the lines: 5,000 new customers 57-61 ms
# against 76-85 ms (bench/RESULTS.md, import23). Only the known ids' customers are upserted, as _MERGE upserts them. A
# new external id another transaction has inserted into the map after this statement's snapshot (or holds
# uncommitted, then commits) fails it with a unique violation: import_lines then runs _MERGE instead, from a
# savepoint taken before it, which takes the other's customer id as a lone claim does. A customer id drawn from the
# sequence is new: the plain insert into customer meets no row.
_MERGE_NEW = text(f"""{_LINES_AND_KNOWN}, new AS (
    SELECT lines.*, nextval((SELECT pg_get_serial_sequence('customer', 'id'))::regclass) AS customer_id FROM lines
    WHERE external_id NOT IN (SELECT external_id FROM known) ORDER BY external_id
), claimed AS (
    INSERT INTO customer_external_id (external_id, customer_id) SELECT external_id, customer_id FROM new
), created AS ({_INTO_CUSTOMER}
    FROM new
    RETURNING id, true AS created
), updated AS ({_INTO_CUSTOMER}
    FROM lines JOIN known USING (external_id) ORDER BY external_id{_UPSERT}
), merged AS (
    SELECT * FROM created UNION ALL SELECT * FROM updated{_MARKED_AND_COUNTED}""")

# What the check passes, read and judged in one call into pydantic-core (JSON parser and Rust regexes; the per-field
# check in Python it replaced cost twice as much): a line with only LINE_FIELDS, values of exactly these types
# (strict: no "5" for 5, no 1.0, no null for marketing_consent or attributes), within these bounds. Days: DAY_PATTERN
# (a day that exists, years 1900..2100). Moments: a day of the same, an upper-case T, hours 00..23, minutes and
# seconds 00..59 (no leap second) with up to 6 decimals, and Z or an offset of hours 00..15 and minutes 00..59
# (Postgres' bound on an offset; the model takes up to 23:59, and a line it takes is sent with its moments in UTC).
# What a pattern cannot say (not after now, a risk level with its date) is checked after it, in `_checked`.
_MOMENT = rf"^{DAY}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{{1,6}})?(Z|[+-](0[0-9]|1[0-5]):[0-5][0-9])$"
_Moment = Annotated[str, StringConstraints(pattern=_MOMENT)]


class _Line(TypedDict):
    __pydantic_config__ = ConfigDict(extra="forbid", strict=True, cache_strings="keys")  # values are mostly unique

    customer_id: Annotated[str, StringConstraints(pattern=EXTERNAL_ID_PATTERN)]
    segment: Literal["retail", "small_business"]
    display_name: NotRequired[
        Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]*$")] | None
    ]
    birth_date: NotRequired[Annotated[str, StringConstraints(pattern=rf"^{DAY}$")] | None]
    onboarded_at: _Moment
    risk_level: NotRequired[Annotated[int, Field(ge=1, le=5)] | None]
    risk_assessed_at: NotRequired[_Moment | None]
    marketing_consent: NotRequired[bool]
    attributes: NotRequired[Annotated[dict[str, Any], Field(max_length=0)]]


_read_line = TypeAdapter(_Line).validate_json


def _checked(raw: bytes, today: str, latest: datetime, surely_past: str) -> dict | None:
    """A line as the check reads it (its fields as written), if it passes; else None. `today`: the UTC day in ISO
    form; `latest`: now + CLOCK_SKEW; `surely_past`: the day two days before latest's, in ISO form: a moment whose
    written day is not after it is before `latest` whatever its offset (under 16 hours), without parsing it."""
    try:
        line = _read_line(raw)
    except ValueError:
        return None
    if (birth := line.get("birth_date")) is not None and birth > today:
        return None
    if not _in_past(line["onboarded_at"], latest, surely_past):
        return None
    assessed = line.get("risk_assessed_at")
    if assessed is None:
        return None if line.get("risk_level") is not None else line
    return line if _in_past(assessed, latest, surely_past) else None


def _in_past(moment: str, latest: datetime, surely_past: str) -> bool:
    return moment[:10] <= surely_past or datetime.fromisoformat(moment) <= latest


def _bounds() -> tuple[str, datetime, str]:
    """(today, latest, surely_past) for _checked, now."""
    now = datetime.now(UTC)
    latest = now + CLOCK_SKEW
    return now.date().isoformat(), latest, (latest.date() - timedelta(days=2)).isoformat()


def fast_line(raw: bytes) -> tuple | None:
    """A line's values as CustomerImportLine reads them (customer id, then PROFILE_FIELDS, attributes as JSON), if
    the check passes it; None for the model to judge. The statement reads a passed line itself (INCOMING_SQL), to
    these values (tests/test_customer_import_sql.py)."""
    if (line := _checked(raw, *_bounds())) is None:
        return None
    birth, assessed = line.get("birth_date"), line.get("risk_assessed_at")
    return (
        line["customer_id"],
        line["segment"],
        line.get("display_name"),
        None if birth is None else date.fromisoformat(birth),
        datetime.fromisoformat(line["onboarded_at"]),
        line.get("risk_level"),
        None if assessed is None else datetime.fromisoformat(assessed),
        line.get("marketing_consent", False),
        "{}",
    )


class _LostClaim(Exception):
    """_MERGE_NEW met a new external id that another transaction has claimed meanwhile."""


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
    bounds = _bounds()
    accepted, to_model, rejections = [], [], []
    for line_no, raw in lines:
        if _checked(raw, *bounds) is None:
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
    merging = {"lines": (b"[" + b",".join(raw for _, raw in accepted) + b"]").decode()}
    try:
        async with unique_or_raise(session, _LostClaim()):
            merged = (await session.execute(_MERGE_NEW, merging)).one()
    except _LostClaim:  # another transaction claimed one of the new external ids: claim them as it did
        merged = (await session.execute(_MERGE, merging)).one()
    return len(accepted), merged.created, merged.updated, rejections, merged.updated_ids


async def warm_up(conn: AsyncConnection) -> None:
    """The merge statements run on nothing (no line: it writes no row, draws no id), in the caller's transaction, to
    be rolled back: the connection has them prepared and the server its tables' catalog entries cached before an
    import's first request (app.core.db.warm_pool)."""
    for merge in (_MERGE_NEW, _MERGE):
        await conn.execute(merge, {"lines": "[]"})
