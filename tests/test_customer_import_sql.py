"""The NDJSON customer import checks its lines (app.customers.customer_import._checked; its values: fast_line):
every line it does not pass goes to CustomerImportLine, whose rejection (line, pointer, message) is the answer, and
every line it passes is stored as the model reads it. Lines the check cannot judge go to the model."""

import json
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError
from sqlalchemy import text

from app.core.errors import validation_errors
from app.customers.customer_import import _MERGE, _MERGE_NEW, fast_line
from app.customers.schemas import CustomerImportLine
from app.customers.service import PROFILE_FIELDS
from tests.factories import customer_body, external_id_map_errors
from tests.test_customers import _import

NOW = datetime.now(UTC)
# two days ahead: a suite run that crosses midnight before it reaches the test still finds the date in the future
AHEAD = (date.today() + timedelta(days=2)).isoformat()
FUTURE = (NOW + timedelta(days=1)).isoformat()


def _line(customer_id: str = "SQ1", drop: tuple = (), **fields) -> str:
    body = {"customer_id": customer_id, **customer_body(), **fields}
    return json.dumps({k: v for k, v in body.items() if k not in drop})


def _model_rejection(raw: str) -> tuple[str | None, str]:
    """What the model says of a line: its first error's pointer and message."""
    with pytest.raises(ValidationError) as caught:
        CustomerImportLine.model_validate_json(raw)
    first = validation_errors([{**e, "loc": ("body", *e["loc"])} for e in caught.value.errors()])[0]
    return first.get("pointer") or None, first["detail"]


REJECTED = [
    # types
    ("/customer_id", _line(customer_id=42)),
    ("/segment", _line(segment=1)),
    ("/display_name", _line(display_name=5)),
    ("/birth_date", _line(birth_date=19800517)),
    ("/onboarded_at", _line(onboarded_at=1577836800)),
    ("/risk_level", _line(risk_level="3")),
    ("/risk_level", _line(risk_level=True)),
    ("/risk_level", _line(risk_level=2.5)),
    ("/risk_assessed_at", _line(risk_assessed_at=5)),
    ("/marketing_consent", _line(marketing_consent="yes")),
    ("/marketing_consent", _line(marketing_consent=None)),
    ("/attributes", _line(attributes=[])),
    ("/attributes", _line(attributes=None)),
    ("/", "[1, 2]"),
    ("/", '"a string"'),
    # bounds
    ("/risk_level", _line(risk_level=0)),
    ("/risk_level", _line(risk_level=6)),
    ("/display_name", _line(display_name="")),
    ("/display_name", _line(display_name="x" * 201)),
    ("/birth_date", _line(birth_date="1899-12-31")),
    ("/birth_date", _line(birth_date=AHEAD)),
    ("/onboarded_at", _line(onboarded_at=FUTURE)),
    ("/onboarded_at", _line(onboarded_at="1899-12-31T00:00:00Z")),
    ("/risk_assessed_at", _line(risk_assessed_at=FUTURE)),
    # patterns
    ("/customer_id", _line(customer_id="-starts-with-a-dash")),
    ("/customer_id", _line(customer_id="x" * 65)),
    ("/customer_id", _line(customer_id="has space")),
    ("/customer_id", _line(customer_id="")),
    ("/birth_date", _line(birth_date="1980-02-30")),
    ("/birth_date", _line(birth_date="1980-5-17")),
    ("/onboarded_at", _line(onboarded_at="2015-03-01T10:00:00")),
    ("/onboarded_at", _line(onboarded_at="2015-03-01 10:00:00Z")),
    ("/onboarded_at", _line(onboarded_at="2015-02-29T10:00:00Z")),
    # enums
    ("/segment", _line(segment="martian")),
    ("/segment", _line(segment="Retail")),
    # unknown and missing fields
    ("/nickname", _line(nickname="Ann")),
    ("/customer_id", _line(drop=("customer_id",))),
    ("/segment", _line(drop=("segment",))),
    ("/onboarded_at", _line(drop=("onboarded_at",))),
    # across fields: risk_level needs risk_assessed_at
    ("/", _line(risk_assessed_at=None)),
    ("/", _line(drop=("risk_assessed_at",))),
]


def _fast(raw: str | bytes) -> tuple | None:
    return fast_line(raw.encode() if isinstance(raw, str) else raw)  # now as the route reads it, at the call


async def test_each_field_rejected_as_the_model_rejects_it(client, as_role, session):
    lines = [_line("SQ-GOOD")] + [raw for _, raw in REJECTED]
    assert _fast(lines[0]) is not None
    for _, raw in REJECTED:
        assert _fast(raw) is None, raw  # not passed by the check: the model gives the rejection
    result = await _import(client, as_role, lines)
    assert (result["accepted"], result["created"], result["rejected"]) == (1, 1, len(REJECTED))
    for (pointer, raw), rejection in zip(REJECTED, result["rejections"], strict=True):
        assert (rejection["pointer"], rejection["detail"]) == _model_rejection(raw), raw
        assert rejection["pointer"] == pointer, raw
    assert [r["line"] for r in result["rejections"]] == list(range(2, len(REJECTED) + 2))
    stored = await session.scalar(text("SELECT count(*) FROM customer WHERE external_id LIKE 'SQ%'"))
    assert stored == 1


PASSED = [
    _line("SQ-A"),
    _line("SQ-B", risk_level=4, onboarded_at="2015-03-01T10:00:00.123456+05:30", display_name="Ren\u00e9e"),
    _line("SQ-C", drop=("display_name", "birth_date", "risk_level", "risk_assessed_at", "marketing_consent")),
    _line("SQ-D", display_name=None, birth_date=None, risk_level=None, risk_assessed_at=None, attributes={}),
    _line("SQ-E", risk_level=1, onboarded_at="2000-02-29T23:59:59-14:00", segment="small_business"),
    _line("SQ:F.g-h", display_name="x" * 200, birth_date="1900-01-01", marketing_consent=False),
    _line("SQ-G", display_name="smile \U0001f600 Ren\u00e9e", onboarded_at="2015-03-01T10:00:00.5+15:59"),
    # a key given twice (its last value counts), a key written with an escape
    '{"customer_id": "SQ-K1", "segment": "martian", "segment": "retail", "onboarded_at": "2015-03-01T10:00:00Z"}',
    '{"customer_id": "SQ-K2", "segm\\u0065nt": "retail", "onboarded_at": "2015-03-01T10:00:00Z"}',
]
# Lines the check leaves to the model (forms it does not read): the model takes them.
TO_THE_MODEL = [
    _line("SQ-M0", risk_level=4.0),
    _line("SQ-M5", risk_level=1e0),
    _line("SQ-M1", onboarded_at="2015-03-01t10:00z"),
    _line("SQ-M4", risk_level=2.0000000000000000001),
    # offsets past Postgres' 15:59, which the model takes (and the import sends in UTC)
    _line("SQ-M2", onboarded_at="2015-03-01T10:00:00+20:00"),
    _line("SQ-M6", display_name="smile \U0001f600", onboarded_at="2015-03-01T10:00:00.5+23:59"),
    _line("SQ-M7", risk_assessed_at="2020-01-01T00:00:00-16:00"),
]


async def test_lines_passed_by_the_check_are_stored_as_the_model_reads_them(client, as_role, session):
    for raw in PASSED:
        assert _fast(raw) is not None, raw
    for raw in TO_THE_MODEL:
        assert _fast(raw) is None, raw
    lines = PASSED + TO_THE_MODEL
    result = await _import(client, as_role, lines)
    assert (result["accepted"], result["created"], result["rejected"]) == (len(lines), len(lines), 0), result
    for raw in lines:
        model = CustomerImportLine.model_validate_json(raw)
        row = (
            await session.execute(
                text(
                    "SELECT segment, display_name, birth_date, onboarded_at, risk_level, risk_assessed_at, "
                    "marketing_consent, attributes FROM customer WHERE external_id = :id"
                ),
                {"id": model.customer_id},
            )
        ).one()
        assert tuple(row) == (
            model.segment,
            model.display_name,
            model.birth_date,
            model.onboarded_at,
            model.risk_level,
            model.risk_assessed_at,
            model.marketing_consent,
            model.attributes,
        ), raw


async def test_a_customer_twice_in_one_file_keeps_its_last_accepted_line(client, as_role, session):
    lines = [
        _line("SQ-DUP1", display_name="first"),
        _line("SQ-DUP2", display_name="kept"),
        _line("SQ-DUP1", display_name="rejected", risk_level=9),
        _line("SQ-DUP1", display_name="last", onboarded_at="2015-03-01t10:00:00Z"),  # through the model
        _line("SQ-DUP2", display_name="rejected too", segment="martian"),
        _line("SQ-DUP3", display_name="one"),
        _line("SQ-DUP3", display_name="two"),
    ]
    result = await _import(client, as_role, lines)
    assert (result["accepted"], result["created"], result["updated"], result["rejected"]) == (5, 3, 0, 2)
    assert [(r["line"], r["pointer"]) for r in result["rejections"]] == [(3, "/risk_level"), (5, "/segment")]
    names = dict(
        (
            await session.execute(
                text("SELECT external_id, display_name FROM customer WHERE external_id LIKE 'SQ-DUP%'")
            )
        ).all()
    )
    assert names == {"SQ-DUP1": "last", "SQ-DUP2": "kept", "SQ-DUP3": "two"}


async def test_lines_the_check_cannot_read_are_judged_by_the_model_line_by_line(client, as_role, session):
    """A number too large for Postgres' numeric, a line that is not JSON: each is validated by the model, the
    others merged."""
    huge = _line("SQ-HUGE").replace('"risk_level": 3', '"risk_level": 1e999999')
    lines = [_line("SQ-OK1"), huge, _line("SQ-OK2", segment="martian"), "{not json"]
    result = await _import(client, as_role, lines)
    assert (result["accepted"], result["created"], result["rejected"]) == (1, 1, 3)
    expected = [(line_no, *_model_rejection(raw)) for line_no, raw in ((2, huge), (3, lines[2]), (4, lines[3]))]
    assert [(r["line"], r["pointer"], r["detail"]) for r in result["rejections"]] == expected


async def test_a_file_whose_every_line_passes_is_merged_by_the_staging_statement(client, as_role, session):
    """Every line passed by the check: merged by the one statement, an existing customer updated, a customer's
    last line winning."""
    first = await _import(client, as_role, [_line("SQ-W1", display_name="before")])
    assert (first["accepted"], first["created"], first["updated"]) == (1, 1, 0)
    lines = [_line("SQ-W1", display_name="after"), _line("SQ-W2", display_name="a"), _line("SQ-W2", display_name="b")]
    result = await _import(client, as_role, lines)
    assert (result["accepted"], result["created"], result["updated"], result["rejected"]) == (3, 1, 1, 0)
    query = text("SELECT external_id, display_name FROM customer WHERE external_id LIKE 'SQ-W%'")
    names = dict((await session.execute(query)).all())
    assert names == {"SQ-W1": "after", "SQ-W2": "b"}


async def test_the_claims_fallback_stores_what_the_plain_inserts_store(session):
    """_MERGE_NEW (new external ids inserted into the map and customer without ON CONFLICT) and _MERGE (the claim
    with ON CONFLICT, which import_lines runs when another transaction claims one of the new ids meanwhile) store
    the same customers, map and mark sets from the same lines: new customers, then known and new ones together."""
    stored = {}
    assessed = {"risk_assessed_at": "2026-01-05T09:30:00+00:00"}  # one moment: both runs compare equal across a second
    for merge, prefix in ((_MERGE_NEW, "SQ-MN"), (_MERGE, "SQ-MO")):
        counts = []
        for run, numbers in (("first", range(4)), ("second", range(2, 6))):
            lines = [
                _line(f"{prefix}{n}", display_name=f"{run} {n}", risk_level=n % 5 + 1, **assessed) for n in numbers
            ]
            # the later line of the same id wins
            lines.append(_line(f"{prefix}3", drop=("display_name", "marketing_consent", "birth_date"), **assessed))
            merged = (await session.execute(merge, {"lines": "[" + ",".join(lines) + "]"})).one()
            counts.append((merged.created, merged.updated, len(merged.updated_ids)))
        rows = (
            await session.execute(
                text(
                    "SELECT substr(external_id, 6), segment, display_name, birth_date, onboarded_at, risk_level, "
                    "risk_assessed_at, marketing_consent, attributes, created_at = updated_at, "
                    "id IN (SELECT unnest(customer_ids) FROM retier_mark_set) FROM customer "
                    "WHERE external_id LIKE :p ORDER BY external_id"
                ),
                {"p": f"{prefix}%"},
            )
        ).all()
        query = text("SELECT id FROM customer WHERE external_id LIKE :p")
        ids = (await session.scalars(query, {"p": f"{prefix}%"})).all()
        assert len(ids) == 6 and await external_id_map_errors(session, ids) == []
        stored[prefix] = (counts, [tuple(row) for row in rows])
    assert stored["SQ-MN"] == stored["SQ-MO"]
    assert stored["SQ-MN"][0] == [(4, 0, 0), (2, 2, 2)]


HOSTILE = [
    b"\xff\xfe not utf-8",
    b'{"customer_id": "SQ-H2", "segment": "retail", "onboarded_at": "2015-03-01T10:00:00Z", "display_name": "a\x00b"}',
    _line("SQ-H3", display_name="lone \ud800 surrogate").replace("\\ud800", "\\uD800").encode(),
    "\ufeff".encode() + _line("SQ-H4").encode(),
    b'{"customer_id": "SQ-H5", "segment": "retail", "onboarded_at": "2015-03-01T10:00:00Z", "risk_level": NaN}',
    ("[" * 300 + "]" * 300).encode(),
    b"12345",
    b"null",
    _line("SQ-H6", attributes={"nested": {"deep": [1, 2, {"x": None}]}}).encode(),
    _line("SQ-H7", onboarded_at="2015-03-01T10:00:00+15:59").encode(),
    _line("SQ-H8", onboarded_at="2015-03-01T24:00:00Z").encode(),
    _line("SQ-H9", onboarded_at="2015-03-01T23:59:60Z").encode(),
    _line("SQ-H10", birth_date="2100-02-29").encode(),
]


async def test_hostile_lines_get_the_models_answer_and_never_a_server_error(client, as_role):
    response = await client.post(
        "/v1/customers/import",
        content=b"\n".join(HOSTILE),
        headers={**as_role("integration"), "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    rejections = {r["line"]: (r["pointer"], r["detail"]) for r in response.json()["rejections"]}
    for line_no, raw in enumerate(HOSTILE, start=1):
        try:
            line = CustomerImportLine.model_validate_json(raw)
        except ValidationError:
            assert rejections.get(line_no) == _model_rejection(raw), raw
        else:  # no custom attribute is declared here: a line with one is rejected by it
            pointer = rejections[line_no][0] if line.attributes else None
            assert pointer == (f"/attributes/{next(iter(line.attributes))}" if line.attributes else None), raw
            assert (line_no in rejections) == bool(line.attributes), raw


def test_the_check_passes_a_line_only_with_the_models_values():
    """Whatever the line, the check passes it only when the model takes it, with the same values."""
    lines = [raw for _, raw in REJECTED] + PASSED + TO_THE_MODEL + HOSTILE
    lines += [_line("SQ-X", onboarded_at=v) for v in ("2015-03-01T10:00:00+05:60", "2015-03-01T10:00:00+24:00")]
    lines += [_line("SQ-X", birth_date=v) for v in ("1900-02-29", "2000-02-29", "2023-02-29", "2100-01-01")]
    lines += [_line("SQ-X", risk_level=v) for v in (10**30, -1, None)] + ['{"customer_id": "SQ-X"}', "{}"]
    passed = 0
    for raw in lines:
        if (values := _fast(raw)) is None:
            continue
        passed += 1
        model = CustomerImportLine.model_validate_json(raw)
        expected = (model.customer_id, *(getattr(model, f) for f in PROFILE_FIELDS[:-1]), json.dumps(model.attributes))
        assert values == expected, raw
    assert passed >= len(PASSED) + 2


def test_moments_near_now_pass_exactly_when_the_model_takes_them():
    """The check reads a moment whose written day is two days before now's or earlier as past without parsing it
    (an offset is under 16 hours); nearer ones it parses: whatever the offset, it passes one only if the model takes
    it (not after now + CLOCK_SKEW), and takes the ones the model takes (within the offsets it reads)."""
    now = datetime.now(UTC)
    for hours in range(-80, 30):
        for offset in ("Z", "+15:59", "-15:59", "+05:30", "-00:00"):
            zone = UTC if offset == "Z" else datetime.strptime(offset, "%z").tzinfo
            written = (now + timedelta(hours=hours)).astimezone(zone).strftime("%Y-%m-%dT%H:%M:%S")
            for field in ("onboarded_at", "risk_assessed_at"):
                raw = _line("SQ-T", **{field: written + offset})
                try:
                    CustomerImportLine.model_validate_json(raw)
                    taken = True
                except ValidationError:
                    taken = False
                assert (_fast(raw) is not None) == taken, raw


async def test_a_file_past_the_line_limit_is_refused_whole_blank_lines_counted(app, client, as_role, session):
    app.state.settings = app.state.settings.model_copy(update={"max_import_lines": 4})
    at_limit = [_line("SQ-L1"), "", _line("SQ-L2"), _line("SQ-L3", segment="martian")]
    result = await _import(client, as_role, at_limit)
    assert (result["accepted"], result["created"], [r["line"] for r in result["rejections"]]) == (2, 2, [4])
    for over in (at_limit + [_line("SQ-L4")], ["", "", "", "", _line("SQ-L4")], [_line("SQ-L4")] * 5 + [""]):
        response = await client.post(
            "/v1/customers/import",
            content="\n".join(over).encode(),
            headers={**as_role("integration"), "Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 422, over
        assert "at most 4 lines" in response.json()["detail"]
    created = text("SELECT count(*) FROM customer WHERE external_id = 'SQ-L4'")
    assert await session.scalar(created) == 0
