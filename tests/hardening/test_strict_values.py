"""Values are read as written, never coerced (a number is no time, a word is no boolean), and bounded to what a bank
can mean (years 1900..2100, amounts within their NUMERIC column, integers within their column's type)."""

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import text

from app.core.pagination import encode_cursor
from tests.factories import add_products, customer_body

TODAY = date.today().isoformat()


def holdings(**holding) -> dict:
    return {"holdings": [{"product_code": "savings_account", "balance": "10.00", "as_of": TODAY, **holding}]}


def event(**fields) -> dict:
    return {
        "events": [
            {
                "type": "transaction",
                "event_id": "e-1",
                "customer_id": "SV-1",
                "amount": "10.00",
                "direction": "credit",
                "channel": "card",
                "occurred_at": "2026-01-01T00:00:00Z",
                **fields,
            }
        ]
    }


@pytest.mark.parametrize(
    ("path", "body", "pointer"),
    [
        ("/v1/customers/SV-2", customer_body(onboarded_at=123), "/onboarded_at"),
        ("/v1/customers/SV-2", customer_body(onboarded_at="123"), "/onboarded_at"),
        ("/v1/customers/SV-2", customer_body(onboarded_at="0001-01-01T00:00:00Z"), "/onboarded_at"),
        ("/v1/customers/SV-2", customer_body(onboarded_at="2015-03-01T10:00:00"), "/onboarded_at"),  # no timezone
        ("/v1/customers/SV-2", customer_body(marketing_consent="yes"), "/marketing_consent"),
        ("/v1/customers/SV-2", customer_body(marketing_consent=1), "/marketing_consent"),
        ("/v1/customers/SV-2", customer_body(risk_level="3"), "/risk_level"),
        ("/v1/customers/SV-2", customer_body(risk_level=3.5), "/risk_level"),
        ("/v1/customers/SV-2", customer_body(risk_level=True), "/risk_level"),
        ("/v1/customers/SV-2", customer_body(birth_date=0), "/birth_date"),
        ("/v1/customers/SV-2", customer_body(birth_date="1980-05-17T00:00:00"), "/birth_date"),
        ("/v1/customers/SV-2", customer_body(birth_date="1899-12-31"), "/birth_date"),
        ("/v1/customers/SV-1/holdings", holdings(as_of="0001-01-01"), "/holdings/0/as_of"),
        ("/v1/customers/SV-1/holdings", holdings(opened_at="9999-12-31"), "/holdings/0/opened_at"),
        ("/v1/customers/SV-1/holdings", holdings(opened_at=20200101), "/holdings/0/opened_at"),
        ("/v1/customers/SV-1/holdings", holdings(balance="1_000"), "/holdings/0/balance"),
        ("/v1/customers/SV-1/holdings", holdings(balance=" 12 "), "/holdings/0/balance"),
        ("/v1/customers/SV-1/holdings", holdings(balance="10000000000000000"), "/holdings/0/balance"),
        ("/v1/customers/SV-1/holdings", holdings(balance=1e16), "/holdings/0/balance"),
        ("/v1/customers/SV-1/holdings", holdings(balance=True), "/holdings/0/balance"),
        ("/v1/events", event(occurred_at=1_700_000_000), "/events/0/transaction/occurred_at"),
        ("/v1/events", event(amount="1e3"), "/events/0/transaction/amount"),
    ],
)
async def test_coerced_or_unbounded_values_in_a_body_are_a_422_at_their_pointer(
    client, as_role, session, path, body, pointer
):
    await add_products(session)
    assert (await client.put("/v1/customers/SV-1", json=customer_body(), headers=as_role("admin"))).status_code == 201
    method = "POST" if path == "/v1/events" else "PUT"
    response = await client.request(method, path, json=body, headers=as_role("admin"))
    assert response.status_code == 422, response.text
    assert pointer in [e.get("pointer") for e in response.json()["errors"]], response.json()


async def test_the_bounds_themselves_are_taken(client, as_role, session):
    await add_products(session)
    body = customer_body(onboarded_at="1900-01-01T00:00:00+01:00", birth_date="1900-01-01")
    created = await client.put("/v1/customers/SV-3", json=body, headers=as_role("admin"))
    assert created.status_code == 201, created.text
    assert created.json()["onboarded_at"] == "1899-12-31T23:00:00Z"
    product = await client.post(
        "/v1/products",
        json={
            "product_code": "last-one",
            "name": "Last",
            "category": "deposit",
            "risk_level": 1,
            "channels": ["web"],
            "active_to": "2100-12-31T23:59:59-05:00",
        },
        headers=as_role("admin"),
    )
    assert product.status_code == 201, product.text
    assert product.json()["active_to"] == "2101-01-01T04:59:59Z"
    stored = await client.put(
        "/v1/customers/SV-3/holdings",
        json=holdings(balance="9999999999999999.99", opened_at="1900-01-01"),
        headers=as_role("admin"),
    )
    assert stored.status_code == 200, stored.text
    assert stored.json()["holdings"][0]["balance"] == "9999999999999999.99"


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        ("integer", 2**70),
        ("integer", -(2**63) - 1),
        ("integer", 1.0),
        ("number", 1e16),
        ("date", "0001-01-01"),
        ("date", "20200101"),
        ("date", "2020-01-01T00:00:00"),
        ("boolean", "yes"),
    ],
)
async def test_custom_attribute_values_are_strict_and_bounded(client, as_role, type_, value):
    declared = await client.put("/v1/attributes/custom/probe", json={"type": type_}, headers=as_role("admin"))
    assert declared.status_code == 200
    response = await client.put(
        "/v1/customers/SV-4", json=customer_body(attributes={"probe": value}), headers=as_role("admin")
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/attributes/probe"


async def test_a_number_attribute_refuses_nan_sent_as_json(client, as_role):
    await client.put("/v1/attributes/custom/income", json={"type": "number"}, headers=as_role("admin"))
    body = '{"segment": "retail", "onboarded_at": "2015-03-01T10:00:00Z", "attributes": {"income": NaN}}'
    response = await client.put(
        "/v1/customers/SV-5", content=body, headers={**as_role("admin"), "content-type": "application/json"}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/attributes/income"


async def test_rule_values_are_bounded_like_the_attributes_they_compare(client, as_role):
    await client.put("/v1/attributes/custom/visits", json={"type": "integer"}, headers=as_role("admin"))
    await client.put("/v1/attributes/custom/first_visit", json={"type": "date"}, headers=as_role("admin"))
    tiers = [
        {"code": "a", "label": "A", "rank": 2, "condition": {"attr": "visits", "op": "gte", "value": 2**70}},
        {"code": "b", "label": "B", "rank": 1, "condition": {"attr": "first_visit", "op": "lt", "value": "0001-01-01"}},
    ]
    response = await client.post(
        "/v1/tier-policies", json={"policy_key": "strict", "name": "S", "tiers": tiers}, headers=as_role("admin")
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/tiers/0/condition/value"
    tiers[0]["condition"]["value"] = 3
    response = await client.post(
        "/v1/tier-policies", json={"policy_key": "strict", "name": "S", "tiers": tiers}, headers=as_role("admin")
    )
    assert response.status_code == 422 and response.json()["errors"][0]["pointer"] == "/tiers/1/condition/value"


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/v1/customers?policy_key=wealth&at_risk=yes", "at_risk"),
        ("/v1/customers?risk_level=3.0", "risk_level"),
        ("/v1/customers?limit=+5", "limit"),
        ("/v1/api-keys?include_revoked=1", "include_revoked"),
        ("/v1/products?active=on", "active"),
        ("/v1/feedback/complaints?opened_from=123", "opened_from"),
        ("/v1/feedback/complaints?opened_to=0001-01-01T00:00:00Z", "opened_to"),
        ("/v1/audit?from=1700000000", "from"),
        ("/v1/care-calendar?policy_key=wealth&tier=gold&days=7.0", "days"),
        ("/v1/customers/SV-1/recommendations?explain=t", "explain"),
        ("/v1/customers/SV-1/recommendations?limit=3.0", "limit"),
        (f"/v1/customers?cursor={encode_cursor(2**70)}", "cursor"),
        (f"/v1/tier-transitions?cursor={encode_cursor(1, 2**63)}", "cursor"),
    ],
)
async def test_query_parameters_take_words_and_digits_as_written(client, as_role, path, parameter):
    response = await client.get(path, headers=as_role("admin"))
    assert response.status_code == 422, response.text
    assert [e["parameter"] for e in response.json()["errors"]] == [parameter]


async def test_a_survey_keeps_its_timezone_and_year_zero_one_is_refused(client, as_role, session):
    assert (await client.put("/v1/customers/SV-6", json=customer_body(), headers=as_role("admin"))).status_code == 201
    survey = {
        "event_id": "sv-1",
        "customer_id": "SV-6",
        "kind": "nps",
        "score": 9,
        "channel": "mobile",
        "touchpoint": "app",
        "occurred_at": "0001-01-01T00:00:00Z",
    }
    refused = await client.post("/v1/feedback/surveys", json=survey, headers=as_role("app"))
    assert refused.status_code == 422 and refused.json()["errors"][0]["pointer"] == "/occurred_at"
    stored = await client.post(
        "/v1/feedback/surveys", json={**survey, "occurred_at": "1900-01-01T00:00:00+01:00"}, headers=as_role("app")
    )
    assert stored.status_code == 201, stored.text
    listed = await client.get("/v1/feedback/surveys", params={"customer_id": "SV-6"}, headers=as_role("admin"))
    for answer in (stored.json(), listed.json()["items"][0]):
        assert datetime.fromisoformat(answer["occurred_at"]) == datetime(1899, 12, 31, 23, 0, tzinfo=UTC)
    count = await session.scalar(text("SELECT count(*) FROM survey_response"))
    assert count == 1


async def test_totals_of_amounts_at_their_bound_are_stored(client, as_role, session):
    """Each balance and amount within its 16 digits, their sums past them: a day's AUM and a day's transactions are
    stored as totals (30 digits, as MoneyTotal publishes), not refused as "a number out of range" (schemathesis
    found a holdings PUT refused so)."""
    await add_products(session)
    admin = as_role("admin")
    assert (await client.put("/v1/customers/SV-5", json=customer_body(), headers=admin)).status_code == 201
    top = "9999999999999999.99"
    body = {"holdings": [{"product_code": code, "balance": top, "as_of": TODAY} for code in ("savings_account",
            "term_deposit_12m", "equity_fund")]}  # fmt: skip
    stored = await client.put("/v1/customers/SV-5/holdings", json=body, headers=admin)
    assert stored.status_code == 200, stored.text
    yesterday = date.fromordinal(date.today().toordinal() - 1).isoformat()  # one day, none of it in the future
    sent = [event(customer_id="SV-5", amount=top, event_id=f"sum-{i}")["events"][0] for i in range(3)]
    events = [{**one, "occurred_at": f"{yesterday}T0{i}:00:00Z"} for i, one in enumerate(sent)]
    accepted = await client.post("/v1/events", json={"events": events}, headers=admin)
    assert accepted.status_code in (200, 202), accepted.text
    aum, txn = (
        await session.execute(
            text(
                "SELECT (SELECT aum FROM customer_aum_daily d WHERE d.customer_id = c.id), "
                "(SELECT sum(txn_amount) FROM customer_activity_daily a WHERE a.customer_id = c.id) "
                "FROM customer c WHERE c.external_id = 'SV-5'"
            )
        )
    ).one()
    assert str(aum) == "29999999999999999.97" and str(txn) == "29999999999999999.97"
    metrics = (await client.get("/v1/customers/SV-5", headers=admin)).json()["metrics"]
    assert metrics["aum"] == "29999999999999999.97"
