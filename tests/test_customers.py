"""Customers over HTTP: upsert, read with metrics, patch, erase, list, import, holdings and events."""

import json
from datetime import UTC, date, datetime, timedelta
from unittest.mock import ANY

import pytest
from sqlalchemy import text

from app.demo import generate_demo_bank
from tests.factories import add_products, customer_body, external_id_map_errors


@pytest.fixture
async def products(session):
    await add_products(session)
    await session.commit()


async def put(client, as_role, external_id, **overrides):
    return await client.put(
        f"/v1/customers/{external_id}", json=customer_body(**overrides), headers=as_role("integration")
    )


async def test_put_creates_then_updates(client, as_role):
    created = await put(client, as_role, "C1")
    assert created.status_code == 201, created.text
    assert created.json()["metrics"]["aum"] == "0.00" or float(created.json()["metrics"]["aum"]) == 0
    updated = await put(client, as_role, "C1", segment="small_business")
    assert updated.status_code == 200
    assert updated.json()["segment"] == "small_business"
    fetched = await client.get("/v1/customers/C1", headers=as_role("app"))
    assert fetched.status_code == 200 and fetched.json()["segment"] == "small_business"


async def test_bad_profile_is_422_naming_each_field_and_writes_nothing(client, as_role, session):
    response = await put(client, as_role, "C2", segment="vip", risk_level=9, onboarded_at="2015-03-01T10:00:00")
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert {"/segment", "/risk_level", "/onboarded_at"} <= pointers
    assert await session.scalar(text("SELECT count(*) FROM customer WHERE external_id = 'C2'")) == 0


async def test_risk_level_needs_an_assessment_date(client, as_role):
    response = await put(client, as_role, "C3", risk_assessed_at=None)
    assert response.status_code == 422


async def test_app_key_cannot_write_customers(client, as_role):
    response = await client.put("/v1/customers/C4", json=customer_body(), headers=as_role("app"))
    assert response.status_code == 403


async def test_unknown_customer_is_404(client, as_role):
    response = await client.get("/v1/customers/NOPE", headers=as_role("app"))
    assert response.status_code == 404
    assert "NOPE" in response.json()["detail"]


async def test_patch_changes_only_given_fields(client, as_role):
    await put(client, as_role, "C5")
    response = await client.patch("/v1/customers/C5", json={"marketing_consent": False}, headers=as_role("integration"))
    assert response.status_code == 200
    body = response.json()
    assert body["marketing_consent"] is False and body["display_name"] == "Test Person"
    bad = await client.patch("/v1/customers/C5", json={"segment": None}, headers=as_role("integration"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/segment"


async def test_custom_attributes_are_checked_against_definitions(client, as_role):
    undeclared = await put(client, as_role, "C6", attributes={"income": 52000})
    assert undeclared.status_code == 422
    assert undeclared.json()["errors"][0]["pointer"] == "/attributes/income"
    declared = await client.put(
        "/v1/attributes/custom/income", json={"type": "number", "unit": "EUR"}, headers=as_role("admin")
    )
    assert declared.status_code == 200, declared.text
    wrong_type = await put(client, as_role, "C6", attributes={"income": "lots"})
    assert wrong_type.status_code == 422 and "number" in wrong_type.json()["errors"][0]["detail"]
    ok = await put(client, as_role, "C6", attributes={"income": 52000})
    assert ok.status_code == 201 and ok.json()["attributes"] == {"income": 52000}
    # a built-in's name is taken, as a duplicate name is: 409 naming the path parameter
    builtin = await client.put("/v1/attributes/custom/aum", json={"type": "number"}, headers=as_role("admin"))
    assert builtin.status_code == 409 and builtin.headers["content-type"] == "application/problem+json"
    assert builtin.json()["errors"][0] == {"location": "path", "parameter": "name", "detail": ANY}
    # so is an existing custom name under another type while a customer carries it: 409 naming /type
    retyped = await client.put("/v1/attributes/custom/income", json={"type": "string"}, headers=as_role("admin"))
    assert retyped.status_code == 409 and retyped.json()["errors"][0]["pointer"] == "/type"


async def test_holdings_drive_metrics_and_keep_history(client, as_role, products, session):
    await put(client, as_role, "C7")
    today = date.today()
    earlier = today - timedelta(days=45)
    first = await client.put(
        "/v1/customers/C7/holdings",
        headers=as_role("integration"),
        json={"holdings": [{"product_code": "current_account", "balance": "10000.00", "as_of": earlier.isoformat()}]},
    )
    assert first.status_code == 200, first.text
    second = await client.put(
        "/v1/customers/C7/holdings",
        headers=as_role("integration"),
        json={
            "holdings": [
                {"product_code": "current_account", "balance": "20000.00", "as_of": today.isoformat()},
                {"product_code": "balanced_fund", "balance": "30000.00", "as_of": today.isoformat()},
                {"product_code": "mortgage", "balance": "150000.00", "as_of": today.isoformat()},
            ]
        },
    )
    assert second.status_code == 200
    metrics = (await client.get("/v1/customers/C7", headers=as_role("app"))).json()["metrics"]
    assert float(metrics["aum"]) == 50000
    assert float(metrics["deposit_balance"]) == 20000 and float(metrics["investment_balance"]) == 30000
    assert float(metrics["loan_balance"]) == 150000
    assert metrics["products_held_count"] == 3
    assert metrics["held_categories"] == ["deposit", "fund", "loan"]
    # 10k held for 45 days, then 50k for today: the daily average lies strictly between.
    assert 10000 < float(metrics["aum_avg_3m"]) < 50000
    assert float(metrics["aum_trend_3m"]) > 0
    history = await session.scalar(
        text(
            "SELECT count(*) FROM holding_balance hb JOIN customer c "
            "ON c.id = hb.customer_id WHERE c.external_id = 'C7'"
        )
    )
    assert history == 4


async def test_unknown_product_in_holdings_is_422_and_nothing_changes(client, as_role, products):
    await put(client, as_role, "C8")
    response = await client.put(
        "/v1/customers/C8/holdings",
        headers=as_role("integration"),
        json={
            "holdings": [
                {"product_code": "current_account", "balance": "1.00", "as_of": date.today().isoformat()},
                {"product_code": "moon_bond", "balance": "1.00", "as_of": date.today().isoformat()},
            ]
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/holdings/1/product_code"
    held = await client.get("/v1/customers/C8/holdings", headers=as_role("app"))
    assert held.json()["holdings"] == []


async def test_retried_event_batch_changes_nothing(client, as_role):
    await put(client, as_role, "C9")
    now = datetime.now(UTC)
    batch = {
        "events": [
            {
                "type": "transaction",
                "event_id": "t1",
                "customer_id": "C9",
                "occurred_at": now.isoformat(),
                "amount": "12.50",
                "direction": "debit",
                "channel": "card",
            },
            {
                "type": "transaction",
                "event_id": "t2",
                "customer_id": "C9",
                "occurred_at": (now - timedelta(days=3)).isoformat(),
                "amount": "100.00",
                "direction": "credit",
                "channel": "transfer",
            },
            {"type": "login", "event_id": "l1", "customer_id": "C9", "occurred_at": now.isoformat()},
            {"type": "referral", "event_id": "r1", "customer_id": "C9", "occurred_at": now.isoformat()},
        ]
    }
    first = await client.post("/v1/events", json=batch, headers=as_role("integration"))
    assert first.json() == {"received": 4, "recorded": 4, "duplicates": 0}
    again = await client.post("/v1/events", json=batch, headers=as_role("integration"))
    assert again.json() == {"received": 4, "recorded": 0, "duplicates": 4}
    metrics = (await client.get("/v1/customers/C9", headers=as_role("app"))).json()["metrics"]
    assert metrics["txn_count_90d"] == 2 and float(metrics["txn_amount_90d"]) == 112.5
    assert metrics["logins_30d"] == 1 and metrics["referrals_12m"] == 1
    assert metrics["days_since_last_txn"] == 0


async def test_an_event_retried_with_a_new_time_or_sent_twice_in_a_batch_counts_once(client, as_role):
    # customer_event is partitioned by occurred_at, so its unique index carries it (app/core/partitions.py)
    await put(client, as_role, "C10")
    now = datetime.now(UTC)

    def login(event_id: str, at: datetime) -> dict:
        return {"type": "login", "event_id": event_id, "customer_id": "C10", "occurred_at": at.isoformat()}

    first = await client.post("/v1/events", json={"events": [login("l1", now)]}, headers=as_role("integration"))
    assert first.json()["recorded"] == 1
    retried = [login("l1", now + timedelta(seconds=5)), login("l2", now), login("l2", now + timedelta(seconds=1))]
    again = await client.post("/v1/events", json={"events": retried}, headers=as_role("integration"))
    assert again.json() == {"received": 3, "recorded": 1, "duplicates": 2}
    metrics = (await client.get("/v1/customers/C10", headers=as_role("app"))).json()["metrics"]
    assert metrics["logins_30d"] == 2


async def test_events_of_several_customers_are_stored_for_each_whatever_the_order_of_their_ids(
    client, as_role, session
):
    # the statement pairs external ids with internal ids (app/customers/events.py), whatever order the lookup
    # returns them in: ids created in the reverse order of the external ids
    for external_id in ("C-Z", "C-M", "C-A"):
        assert (await put(client, as_role, external_id)).status_code == 201
    # and C-Z's row written again: its new version comes after the others' in the table (a scan reads C-M, C-A, C-Z)
    assert (await put(client, as_role, "C-Z", segment="small_business")).status_code == 200
    now = datetime.now(UTC).isoformat()
    counts = {"C-Z": 1, "C-M": 2, "C-A": 3}
    events = [
        {"type": "login", "event_id": f"{external_id}-{n}", "customer_id": external_id, "occurred_at": now}
        for external_id, count in counts.items()
        for n in range(count)
    ]
    response = await client.post("/v1/events", json={"events": events}, headers=as_role("integration"))
    assert response.json() == {"received": 6, "recorded": 6, "duplicates": 0}
    stored = await session.execute(
        text(
            "SELECT c.external_id, count(*) FROM customer_event e JOIN customer c ON c.id = e.customer_id "
            "WHERE e.event_id LIKE c.external_id || '-%' GROUP BY 1"
        )
    )
    assert dict(stored.all()) == counts
    for external_id, count in counts.items():
        metrics = (await client.get(f"/v1/customers/{external_id}", headers=as_role("app"))).json()["metrics"]
        assert metrics["logins_30d"] == count


async def test_event_for_unknown_customer_refuses_the_batch(client, as_role, session):
    await put(client, as_role, "C10")
    now = datetime.now(UTC).isoformat()
    response = await client.post(
        "/v1/events",
        headers=as_role("integration"),
        json={
            "events": [
                {"type": "login", "event_id": "a", "customer_id": "C10", "occurred_at": now},
                {"type": "login", "event_id": "b", "customer_id": "GHOST", "occurred_at": now},
            ]
        },
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/events/1/customer_id"
    assert await session.scalar(text("SELECT count(*) FROM customer_event")) == 0


@pytest.mark.parametrize("event_id", ["a\\u0000b", "a\\ud800b"])
async def test_an_event_id_the_database_cannot_hold_is_a_422(client, as_role, event_id):
    # the statement reads the events from the request's JSON (app/customers/events.py): Postgres parses it there
    await put(client, as_role, "C10")
    now = datetime.now(UTC).isoformat()
    body = (
        f'{{"events": [{{"type": "login", "event_id": "{event_id}", "customer_id": "C10", "occurred_at": "{now}"}}]}}'
    )
    headers = {**as_role("integration"), "content-type": "application/json"}
    response = await client.post("/v1/events", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("offset", ["+20:20", "-23:59", "+15:59"])
async def test_an_event_time_with_any_published_offset_is_stored_at_its_instant(client, as_role, session, offset):
    # the statement reads the request's JSON, and Postgres reads offsets only to +-15:59: such times go in UTC
    await put(client, as_role, "C10")
    moment = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    sign, hours, minutes = offset[0], int(offset[1:3]), int(offset[4:])
    shift = timedelta(hours=hours, minutes=minutes) * (1 if sign == "+" else -1)
    local = (moment + shift).replace(tzinfo=None).isoformat() + offset
    events = [
        {"type": "login", "event_id": "tz-1", "customer_id": "C10", "occurred_at": local},
        {"type": "login", "event_id": "tz-2", "customer_id": "C10", "occurred_at": moment.isoformat()},
    ]
    response = await client.post("/v1/events", headers=as_role("integration"), json={"events": events})
    assert response.status_code == 200, response.text
    stored = await session.scalars(text("SELECT occurred_at FROM customer_event WHERE event_id LIKE 'tz-%'"))
    assert list(stored) == [moment, moment]


async def test_bad_event_fields_are_named(client, as_role):
    response = await client.post(
        "/v1/events",
        headers=as_role("integration"),
        json={
            "events": [
                {
                    "type": "transaction",
                    "event_id": "x",
                    "customer_id": "C1",
                    "occurred_at": "2026-01-01T00:00:00Z",
                    "amount": "-5",
                    "direction": "sideways",
                    "channel": "card",
                }
            ]
        },
    )
    assert response.status_code == 422
    pointers = {e["pointer"] for e in response.json()["errors"]}
    assert "/events/0/transaction/amount" in pointers and "/events/0/transaction/direction" in pointers


async def test_an_event_in_the_future_is_named_among_good_ones(client, as_role):
    # the batch's fast check (intake_schemas.checked_event_batch) finds it and hands the batch to EventBatch's 422
    await put(client, as_role, "C10")
    now = datetime.now(UTC)
    events = [
        {"type": "login", "event_id": f"f-{i}", "customer_id": "C10", "occurred_at": when.isoformat()}
        for i, when in enumerate([now - timedelta(days=30), now + timedelta(hours=1), now - timedelta(minutes=1)])
    ]
    response = await client.post("/v1/events", headers=as_role("integration"), json={"events": events})
    assert response.status_code == 422, response.text
    errors = response.json()["errors"]
    assert [e["pointer"] for e in errors] == ["/events/1/login/occurred_at"]
    assert "future" in errors[0]["detail"]


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"occurred_at": "2026-11-22t08:14:03z"},
        {"occurred_at": "2026-11-22T08:14:03.123456-15:59"},
        {"occurred_at": "2026-11-22T08:14:03+16:00"},
        {"occurred_at": "2026-11-22T08:14:03Z\n"},
        {"occurred_at": "1899-12-31T23:59:59Z"},
        {"occurred_at": "2100-12-31T23:59:59Z"},
        {"occurred_at": 1764000000},
        {"amount": "054.90"},
        {"amount": "0.00"},
        {"amount": 54.9},
        {"amount": "54.901"},
        {"channel": "atm", "direction": "credit"},
        {"customer_id": "-C1"},
        {"event_id": ""},
        {"event_id": "a\x00b"},
        {"type": "referral"},
        {"type": "login", "channel": "web"},
        {"type": "login", "channel": "card"},
        {"extra": 1},
    ],
)
def test_the_fast_event_check_accepts_only_what_event_batch_accepts(change):
    from typing import Annotated

    from pydantic import TypeAdapter, ValidationError, WrapValidator

    from app.customers.intake_schemas import CheckedEventBatch, EventBatch, checked_event_batch

    event = {
        "type": "transaction",
        "event_id": "e1",
        "customer_id": "C1",
        "occurred_at": "2026-11-22T08:14:03Z",
        "amount": "54.90",
        "direction": "debit",
        "channel": "card",
    }
    event.update(change)
    if event["type"] != "transaction":
        for field in ("amount", "direction", "channel")[: 3 if event["type"] == "referral" else 2]:
            event.pop(field, None)
    body = json.loads(json.dumps({"events": [event]}))
    wrapped, full = TypeAdapter(Annotated[EventBatch, WrapValidator(checked_event_batch)]), TypeAdapter(EventBatch)
    try:
        expected = full.validate_python(body)
    except ValidationError as refused:
        with pytest.raises(ValidationError) as caught:
            wrapped.validate_python(body)
        assert caught.value.errors(include_context=False) == refused.errors(include_context=False)
        return
    got = wrapped.validate_python(body)
    assert isinstance(got, CheckedEventBatch) or change  # an ordinary batch takes the fast check
    if isinstance(got, CheckedEventBatch):  # the texts as sent, what EventBatch read from them
        assert got.events[0].customer_id == expected.events[0].customer_id
        assert datetime.fromisoformat(got.events[0].occurred_at.upper()) == expected.events[0].occurred_at
    else:
        assert got == expected


async def test_erasure_removes_personal_data_and_is_idempotent(client, as_role, products, session):
    await put(client, as_role, "C11", display_name="Erika Mustermann")
    await client.put(
        "/v1/customers/C11/holdings",
        headers=as_role("integration"),
        json={"holdings": [{"product_code": "current_account", "balance": "5.00", "as_of": date.today().isoformat()}]},
    )
    assert (await client.delete("/v1/customers/C11", headers=as_role("admin"))).status_code == 204
    assert (await client.delete("/v1/customers/C11", headers=as_role("admin"))).status_code == 204
    assert (await client.get("/v1/customers/C11", headers=as_role("app"))).status_code == 404
    row = (
        await session.execute(
            text("SELECT external_id, display_name, birth_date FROM customer WHERE external_id LIKE 'erased:%'")
        )
    ).one()
    assert row.display_name is None and row.birth_date is None and "C11" not in row.external_id
    assert await session.scalar(text("SELECT count(*) FROM holding")) == 0
    assert (await client.delete("/v1/customers/NEVER", headers=as_role("admin"))).status_code == 404


async def test_list_filters_and_cursor_is_stable_under_inserts(client, as_role):
    for i in range(7):
        await put(client, as_role, f"L{i}", segment="small_business" if i % 2 else "retail")
    headers = as_role("admin")
    first = (await client.get("/v1/customers", params={"limit": 3, "segment": "retail"}, headers=headers)).json()
    assert [c["customer_id"] for c in first["items"]] == ["L0", "L2", "L4"]
    await put(client, as_role, "L99")  # a new customer must not shift the pages already seen
    second = (
        await client.get(
            "/v1/customers", params={"limit": 3, "segment": "retail", "cursor": first["next_cursor"]}, headers=headers
        )
    ).json()
    assert [c["customer_id"] for c in second["items"]] == ["L6", "L99"]
    assert second["next_cursor"] is None
    bad = await client.get("/v1/customers", params={"cursor": "garbage!"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["parameter"] == "cursor"


async def test_import_keeps_good_lines_and_reports_each_bad_one(client, as_role, session):
    lines = [
        json.dumps({"customer_id": "I1", **customer_body()}),
        "{not json",
        json.dumps({"customer_id": "I2", **customer_body(segment="martian")}),
        "",
        json.dumps({"customer_id": "I3", **customer_body(risk_level=None, risk_assessed_at=None)}),
    ]
    result = await _import(client, as_role, lines)
    assert result["accepted"] == 2 and result["created"] == 2 and result["rejected"] == 2
    assert [r["line"] for r in result["rejections"]] == [2, 3]
    assert result["rejections"][1]["pointer"] == "/segment"
    assert await session.scalar(text("SELECT count(*) FROM customer WHERE external_id IN ('I1','I3')")) == 2


async def test_an_import_stores_each_field_as_a_put_would_and_a_later_line_of_a_customer_wins(client, as_role):
    """The import stages its lines with COPY and merges them set-based: every field arrives as PUT stores it, an
    existing customer is updated, a customer's later line wins, a line with an undeclared attribute is rejected."""
    declared = await client.put("/v1/attributes/custom/income", json={"type": "number"}, headers=as_role("admin"))
    assert declared.status_code == 200, declared.text
    assert (await put(client, as_role, "IM1", segment="retail")).status_code == 201
    assessed = "2026-01-02T03:04:05+00:00"
    lines = [
        json.dumps({"customer_id": "IM2", **customer_body(display_name="First")}),
        json.dumps(
            {
                "customer_id": "IM1",
                **customer_body(
                    segment="small_business",
                    display_name="Ann Example",
                    birth_date="1971-02-03",
                    risk_level=5,
                    risk_assessed_at=assessed,
                    marketing_consent=False,
                    attributes={"income": 81000},
                ),
            }
        ),
        json.dumps({"customer_id": "IM3", **customer_body(attributes={"shoe_size": 42})}),
        json.dumps({"customer_id": "IM2", **customer_body(display_name="Second", risk_level=None)}),
    ]
    result = await _import(client, as_role, lines)
    assert (result["accepted"], result["created"], result["updated"], result["rejected"]) == (3, 1, 1, 1)
    assert [(r["line"], r["pointer"]) for r in result["rejections"]] == [(3, "/attributes/shoe_size")]
    updated = (await client.get("/v1/customers/IM1", headers=as_role("app"))).json()
    assert updated["segment"] == "small_business" and updated["display_name"] == "Ann Example"
    assert updated["birth_date"] == "1971-02-03" and updated["risk_level"] == 5
    assert updated["marketing_consent"] is False and updated["attributes"] == {"income": 81000}
    assert datetime.fromisoformat(updated["risk_assessed_at"]) == datetime.fromisoformat(assessed)
    created = (await client.get("/v1/customers/IM2", headers=as_role("app"))).json()
    assert created["display_name"] == "Second" and created["risk_level"] is None
    assert (await client.get("/v1/customers/IM3", headers=as_role("app"))).status_code == 404


async def test_every_writer_of_an_external_id_keeps_its_map_true(client, as_role, session):
    """customer_external_id holds external ids unique (customer.external_id has a plain index): PUT (again: no id
    drawn), the import (and its re-run, which changes nothing), erasure and a creation again under the erased id,
    and the demo bank each leave one row there per customer row, naming its external id."""
    assert (await put(client, as_role, "MAP1")).status_code == 201
    drawn = "SELECT last_value FROM customer_id_seq"
    last_id = await session.scalar(text(drawn))
    assert (await put(client, as_role, "MAP1", segment="small_business")).status_code == 200
    assert await session.scalar(text(drawn)) == last_id  # a known id draws no new one from the sequence
    lines = [json.dumps({"customer_id": f"MAP{n}", **customer_body()}) for n in (1, 2, 3)]
    assert (await _import(client, as_role, lines))["created"] == 2
    ids = "SELECT external_id, id FROM customer WHERE external_id LIKE 'MAP%' ORDER BY 1"
    before = (await session.execute(text(ids))).all()
    rerun = await _import(client, as_role, lines)
    assert (rerun["created"], rerun["updated"]) == (0, 3) and (await session.execute(text(ids))).all() == before
    erased_id = dict(before)["MAP2"]
    assert (await client.delete("/v1/customers/MAP2", headers=as_role("admin"))).status_code == 204
    assert (await put(client, as_role, "MAP2")).status_code == 201  # a new customer, under the erased id
    await generate_demo_bank(session, customers=20, seed=3)
    written = "SELECT id FROM customer WHERE external_id LIKE 'MAP%' OR external_id ~ '^C[0-9]{8}$' OR id = :erased"
    customers = (await session.scalars(text(written), {"erased": erased_id})).all()
    assert len(customers) == 3 + 1 + 20
    assert await external_id_map_errors(session, customers) == []
    mapped = "SELECT external_id, customer_id FROM customer_external_id WHERE external_id LIKE 'MAP%' ORDER BY 1"
    now = (await session.execute(text(ids))).all()
    assert (await session.execute(text(mapped))).all() == now and dict(now)["MAP2"] != erased_id
    await session.execute(text("DELETE FROM customer_external_id WHERE external_id = 'MAP3'"))  # the check can fail
    assert await external_id_map_errors(session, customers) == [dict(now)["MAP3"]]


async def _import(client, as_role, lines: list[str]) -> dict:
    """POST the lines as one NDJSON import; its 200 summary."""
    response = await client.post(
        "/v1/customers/import",
        content="\n".join(lines).encode(),
        headers={**as_role("integration"), "Content-Type": "application/x-ndjson"},
    )
    assert response.status_code == 200, response.text
    return response.json()
