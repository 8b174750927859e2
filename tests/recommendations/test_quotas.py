"""Product quotas: set by admins (audited, ETag), counted once per conversion (convert events, new holdings, an
import run again), never by served lists; a sold-out product is filtered `sold_out` and comes back with the next
period or a raised cap; usage reported; product.sold_out emitted once per sell-out."""

import json
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import text

from app.products import quotas
from tests.recommendations.test_recommendations import make_customer, recommend

ADMIN, INTEGRATION = "admin", "integration"


async def put_quota(client, as_role, code, body, **headers):
    return await client.put(f"/v1/products/{code}/quota", json=body, headers={**as_role(ADMIN), **headers})


async def usage_of(client, as_role, code) -> dict:
    response = await client.get("/v1/product-quotas", params={"limit": 500}, headers=as_role(ADMIN))
    assert response.status_code == 200, response.text
    return next(item for item in response.json()["items"] if item["product_code"] == code)


async def convert(client, as_role, external_id, code, *, event_id=None, amount=None):
    """Serve a list to the customer and report a convert of `code` on it."""
    listed = await recommend(client, as_role, external_id)
    item = next(i for i in listed["items"] if i["product"]["product_code"] == code)
    event = {
        "event_id": event_id or uuid.uuid4().hex,
        "recommendation_id": item["recommendation_id"],
        "customer_id": external_id,
        "type": "convert",
        "occurred_at": datetime.now(UTC).isoformat(),
    }
    if amount is not None:
        event["amount"] = amount
    response = await client.post("/v1/feedback/events", json={"events": [event]}, headers=as_role("app"))
    assert response.status_code == 200 and response.json()["rejected"] == 0, response.text
    return event


def filters_of(listed: dict) -> dict[str, str]:
    return {f["product_code"]: f["filter"] for f in listed["filtered_out"]}


async def sold_out_events(session, code: str) -> list[dict]:
    rows = await session.execute(
        text(
            "SELECT payload FROM webhook_event WHERE event_type = 'product.sold_out' "
            "AND payload->>'product_code' = :p ORDER BY created_at"
        ),
        {"p": code},
    )
    return [row.payload for row in rows]


async def test_admin_sets_reads_and_replaces_a_quota_with_etag_and_audit(client, as_role, bank, session):
    assert (await client.get("/v1/products/bond_fund/quota", headers=as_role(ADMIN))).status_code == 404
    assert (await put_quota(client, as_role, "no_such_product", {"period": "month", "cap_count": 5})).status_code == 404
    no_cap = await put_quota(client, as_role, "bond_fund", {"period": "month"})
    assert no_cap.status_code == 422
    bad_period = await put_quota(client, as_role, "bond_fund", {"period": "week", "cap_count": 5})
    assert bad_period.status_code == 422 and bad_period.json()["errors"][0]["pointer"] == "/period"
    created = await put_quota(client, as_role, "bond_fund", {"period": "month", "cap_amount": "500000000.00"})
    assert created.status_code == 200, created.text
    assert created.json() == {
        "product_code": "bond_fund",
        "period": "month",
        "cap_count": None,
        "cap_amount": "500000000.00",
    }
    read = await client.get("/v1/products/bond_fund/quota", headers=as_role("app"))
    assert read.status_code == 200 and read.headers["etag"] == created.headers["etag"]
    stale = await put_quota(client, as_role, "bond_fund", {"period": "year", "cap_count": 9}, **{"If-Match": '"x"'})
    assert stale.status_code == 412
    replaced = await put_quota(
        client, as_role, "bond_fund", {"period": "year", "cap_count": 9}, **{"If-Match": read.headers["etag"]}
    )
    assert replaced.status_code == 200 and replaced.json()["cap_count"] == 9
    assert (await put_quota(client, as_role, "bond_fund", {"period": "year", "cap_count": 9})).status_code == 200
    forbidden = await client.put(
        "/v1/products/bond_fund/quota", json={"period": "year", "cap_count": 1}, headers=as_role("app")
    )
    assert forbidden.status_code == 403
    actions = (
        await session.scalars(
            text(
                "SELECT action FROM audit_event WHERE entity_type = 'product_quota' AND entity_key = 'bond_fund' "
                "ORDER BY id"
            )
        )
    ).all()
    assert actions == ["product_quota.create", "product_quota.update", "product_quota.update"]
    stale_delete = await client.delete("/v1/products/bond_fund/quota", headers={**as_role(ADMIN), "If-Match": '"x"'})
    assert stale_delete.status_code == 412
    current = await client.get("/v1/products/bond_fund/quota", headers=as_role(ADMIN))
    assert current.status_code == 200 and current.json()["cap_count"] == 9
    deleted = await client.delete(
        "/v1/products/bond_fund/quota", headers={**as_role(ADMIN), "If-Match": current.headers["etag"]}
    )
    assert deleted.status_code == 204
    assert (await client.get("/v1/products/bond_fund/quota", headers=as_role(ADMIN))).status_code == 404
    last = (
        await session.execute(
            text(
                "SELECT action, before ->> 'cap_count', coalesce(after::text, 'null') FROM audit_event "
                "WHERE entity_type = 'product_quota' AND entity_key = 'bond_fund' ORDER BY id"
            )
        )
    ).all()
    assert [tuple(row) for row in last[3:]] == [("product_quota.delete", "9", "null")]


async def test_served_lists_do_not_drain_a_quota_conversions_do(client, as_role, bank, session):
    await put_quota(client, as_role, "bond_fund", {"period": "month", "cap_count": 2})
    await make_customer(client, as_role, "Q1")
    await make_customer(client, as_role, "Q2")
    for _ in range(5):
        await recommend(client, as_role, "Q1")
    usage = await usage_of(client, as_role, "bond_fund")
    assert (usage["sold_count"], usage["remaining_count"], usage["sold_out"]) == (0, 2, False)

    event = await convert(client, as_role, "Q1", "bond_fund")
    usage = await usage_of(client, as_role, "bond_fund")
    assert (usage["sold_count"], usage["remaining_count"], usage["sold_out"]) == (1, 1, False)
    # the same event again (a retry), and a PUT of holdings that already hold it: the conversion counted once
    response = await client.post("/v1/feedback/events", json={"events": [event]}, headers=as_role("app"))
    assert response.json()["duplicates"] == 1
    held = await client.get("/v1/customers/Q1/holdings", headers=as_role(INTEGRATION))
    assert "bond_fund" in {h["product_code"] for h in held.json()["holdings"]}
    assert (await usage_of(client, as_role, "bond_fund"))["sold_count"] == 1
    assert await sold_out_events(session, "bond_fund") == []


async def test_a_sold_out_product_is_filtered_and_comes_back_when_the_cap_is_raised(client, as_role, bank, session):
    await put_quota(client, as_role, "bond_fund", {"period": "month", "cap_count": 1})
    for customer in ("S1", "S2", "S3"):
        await make_customer(client, as_role, customer)
    before = await recommend(client, as_role, "S2", explain="true")
    assert "bond_fund" in {i["product"]["product_code"] for i in before["items"]}  # S2's offer state is now stored
    await convert(client, as_role, "S1", "bond_fund")

    usage = await usage_of(client, as_role, "bond_fund")
    assert (usage["sold_count"], usage["remaining_count"], usage["sold_out"]) == (1, 0, True)
    events = await sold_out_events(session, "bond_fund")
    assert len(events) == 1 and events[0]["sold_count"] == 1 and events[0]["period"] == "month"
    state_before = await session.scalar(text("SELECT count(*) FROM customer_offer_state WHERE valid_until > now()"))

    after = await recommend(client, as_role, "S2", explain="true")  # the stored state is read, and filtered now
    assert "bond_fund" not in {i["product"]["product_code"] for i in after["items"]}
    assert filters_of(after)["bond_fund"] == "sold_out"
    assert next(f for f in after["filtered_out"] if f["product_code"] == "bond_fund")["detail"].startswith("its quota")
    assert await session.scalar(text("SELECT count(*) FROM customer_offer_state WHERE valid_until > now()")) == (
        state_before
    )

    computed = await recommend(client, as_role, "S3", explain="true")  # no state yet: computed, filtered alike
    assert filters_of(computed)["bond_fund"] == "sold_out"

    # a later conversion is recorded past the cap, not counted, and no second sold-out event
    await client.put(
        "/v1/customers/S3/holdings",
        headers=as_role(INTEGRATION),
        json={"holdings": [{"product_code": "bond_fund", "balance": "10.00", "as_of": date.today().isoformat()}]},
    )
    usage = await usage_of(client, as_role, "bond_fund")
    assert (usage["sold_count"], usage["over_cap_count"]) == (1, 1)
    assert len(await sold_out_events(session, "bond_fund")) == 1

    await put_quota(client, as_role, "bond_fund", {"period": "month", "cap_count": 5})
    back = await recommend(client, as_role, "S2", explain="true")
    assert "bond_fund" in {i["product"]["product_code"] for i in back["items"]}
    assert (await usage_of(client, as_role, "bond_fund"))["sold_out"] is False
    # lowered to what was sold: sold out again, and said so again
    await put_quota(client, as_role, "bond_fund", {"period": "month", "cap_count": 1})
    assert filters_of(await recommend(client, as_role, "S2", explain="true"))["bond_fund"] == "sold_out"
    assert len(await sold_out_events(session, "bond_fund")) == 2


async def test_a_quota_sold_out_last_period_is_offered_again_in_the_next(client, as_role, bank, session):
    await put_quota(client, as_role, "bond_fund", {"period": "month", "cap_count": 1})
    await make_customer(client, as_role, "M1")
    await make_customer(client, as_role, "M2")
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'M1'"))
    start, _ = quotas.period_bounds("month", datetime.now(UTC))
    last_month = start - timedelta(days=3)
    counted = await quotas.record_conversions(
        session, [quotas.Conversion("bond_fund", customer_id, "holding")], now=last_month
    )
    assert counted == 1
    usage = await quotas.get_quota(session, "bond_fund", now=last_month)
    assert usage.sold_out and usage.period_end == start
    now_usage = await usage_of(client, as_role, "bond_fund")  # this month: nothing sold yet
    assert (now_usage["sold_count"], now_usage["sold_out"]) == (0, False)
    assert now_usage["period_start"].startswith(start.date().isoformat())
    listed = await recommend(client, as_role, "M2", explain="true")
    assert "bond_fund" in {i["product"]["product_code"] for i in listed["items"]}
    # the same customer converting this month counts in this month's quota
    assert await quotas.record_conversions(session, [quotas.Conversion("bond_fund", customer_id, "convert")]) == 1
    assert (await usage_of(client, as_role, "bond_fund"))["sold_out"] is True


async def test_amount_caps_count_convert_amounts_and_new_balances(client, as_role, bank, session):
    await put_quota(client, as_role, "balanced_fund", {"period": "lifetime", "cap_amount": "1000.00"})
    for customer in ("A1", "A2", "A3"):
        await make_customer(client, as_role, customer)
    await convert(client, as_role, "A1", "balanced_fund", amount="600.00")
    too_much = await client.put(
        "/v1/customers/A2/holdings",
        headers=as_role(INTEGRATION),
        json={"holdings": [{"product_code": "balanced_fund", "balance": "500.00", "as_of": date.today().isoformat()}]},
    )
    assert too_much.status_code == 200  # the holding is recorded; the quota does not count it
    usage = await usage_of(client, as_role, "balanced_fund")
    assert (usage["sold_amount"], usage["remaining_amount"], usage["over_cap_count"]) == ("600.00", "400.00", 1)
    assert usage["period_end"] is None and usage["sold_out"] is False
    await client.put(
        "/v1/customers/A3/holdings",
        headers=as_role(INTEGRATION),
        json={"holdings": [{"product_code": "balanced_fund", "balance": "400.00", "as_of": date.today().isoformat()}]},
    )
    usage = await usage_of(client, as_role, "balanced_fund")
    assert (usage["sold_amount"], usage["sold_out"]) == ("1000.00", True)
    events = await sold_out_events(session, "balanced_fund")
    assert len(events) == 1 and events[0]["period_end"] is None and events[0]["cap_amount"] == "1000.00"


async def test_a_holding_dropped_and_added_again_in_the_period_counts_once(client, as_role, bank, session):
    await put_quota(client, as_role, "bond_fund", {"period": "year", "cap_count": 10})
    await make_customer(client, as_role, "D1")
    put = [{"product_code": "bond_fund", "balance": "100.00", "as_of": date.today().isoformat()}]
    for holdings in (put, put, [], put):
        response = await client.put(
            "/v1/customers/D1/holdings", headers=as_role(INTEGRATION), json={"holdings": holdings}
        )
        assert response.status_code == 200
    assert (await usage_of(client, as_role, "bond_fund"))["sold_count"] == 1


async def test_a_holdings_import_run_again_counts_each_new_holding_once(client, as_role, bank, session):
    await put_quota(client, as_role, "bond_fund", {"period": "month", "cap_count": 100})
    for n in range(4):
        await make_customer(client, as_role, f"I{n}", holdings=())
    lines = "".join(
        json.dumps(
            {"customer_id": f"I{n}", "product_code": "bond_fund", "balance": "50.00", "as_of": str(date.today())}
        )
        + "\n"
        for n in range(3)
    )
    headers = {"content-type": "application/x-ndjson", **as_role(INTEGRATION)}
    first = await client.post("/v1/holdings/import", content=lines, headers={**headers, "Idempotency-Key": "q-1"})
    assert first.status_code == 201, first.text
    assert (await usage_of(client, as_role, "bond_fund"))["sold_count"] == 3
    replayed = await client.post("/v1/holdings/import", content=lines, headers={**headers, "Idempotency-Key": "q-1"})
    assert replayed.status_code == 200
    with_i3 = lines + lines.replace('"I0"', '"I3"').split("\n")[0] + "\n"
    again = await client.post("/v1/holdings/import", content=with_i3, headers=headers)
    assert again.status_code == 201, again.text  # another file: I3 is new, I0..I2 already hold it
    usage = await usage_of(client, as_role, "bond_fund")
    assert (usage["sold_count"], usage["sold_amount"]) == (4, "200.00")


async def test_erasure_takes_the_amounts_of_a_customers_conversions(client, as_role, bank, session):
    await put_quota(client, as_role, "bond_fund", {"period": "month", "cap_amount": "1000.00"})
    await make_customer(client, as_role, "E1", holdings=(("bond_fund", "300.00"),))
    assert (await usage_of(client, as_role, "bond_fund"))["sold_amount"] == "300.00"
    erased = await client.delete("/v1/customers/E1", headers=as_role(ADMIN))
    assert erased.status_code == 204, erased.text
    amounts = (await session.scalars(text("SELECT amount FROM product_quota_conversion"))).all()
    assert amounts == [None]
    assert (await usage_of(client, as_role, "bond_fund"))["sold_amount"] == "300.00"


def test_periods_are_utc_calendar_periods():
    moment = datetime(2026, 11, 17, 23, 30, tzinfo=UTC)
    assert quotas.period_bounds("month", moment) == (
        datetime(2026, 11, 1, tzinfo=UTC),
        datetime(2026, 12, 1, tzinfo=UTC),
    )
    assert quotas.period_bounds("quarter", moment) == (
        datetime(2026, 10, 1, tzinfo=UTC),
        datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert quotas.period_bounds("year", moment)[1] == datetime(2027, 1, 1, tzinfo=UTC)
    assert quotas.period_bounds("lifetime", moment) == (quotas.LIFETIME_START, None)
    assert quotas.period_bounds("month", datetime(2026, 12, 31, 23, 59, tzinfo=UTC))[1] == datetime(
        2027, 1, 1, tzinfo=UTC
    )
    usage = quotas.Usage("x", "month", 2, Decimal("10"), moment, None, 1, Decimal("9"), 0, False, None)
    assert usage.fits(Decimal("1")) and not usage.fits(Decimal("1.01"))
