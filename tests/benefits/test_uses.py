"""Benefit uses through HTTP: counted once per Idempotency-Key, refused with a 409 problem when not entitled or used
up, the benefit.used event in the same transaction, listed per customer, counted in the take-up report, erased with
the customer."""

from sqlalchemy import text

from tests.benefits.helpers import add_benefit, benefits_of, make_customer


async def use(client, as_role, customer: str, code: str, key: str | None = None, **body):
    headers = {**as_role("app"), **({"Idempotency-Key": key} if key else {})}
    return await client.post(f"/v1/customers/{customer}/benefits/{code}/uses", headers=headers, json=body)


async def test_a_use_is_counted_once_and_never_beyond_the_limit(client, as_role, wealth, session):
    await add_benefit(client, as_role, "lounge", "wealth", value="2", unit="count", usage_limit=2, usage_period="year")
    await make_customer(client, as_role, "U1", "620000.00")
    first = await use(client, as_role, "U1", "lounge", key="k-1", channel="mobile")
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"/v1/customers/U1/benefit-uses/{first.json()['id']}"
    assert first.json()["usage"]["used"] == 1 and first.json()["usage"]["left"] == 1
    assert (first.json()["policy_key"], first.json()["tier"]) == ("wealth", "wealth")
    again = await use(client, as_role, "U1", "lounge", key="k-1", channel="mobile")
    assert again.json()["id"] == first.json()["id"] and again.headers["idempotent-replayed"] == "true"
    [lounge] = (await benefits_of(client, as_role, "U1"))["in_force"]
    assert lounge["usage"]["used"] == 1 and lounge["usage"]["left"] == 1 and lounge["usage"]["period"] == "year"

    assert (await use(client, as_role, "U1", "lounge", key="k-2")).status_code == 201
    refused = await use(client, as_role, "U1", "lounge", key="k-3")
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["code"] == "limit_reached" and refused.json()["limit"] == 2
    assert await session.scalar(text("SELECT count(*) FROM benefit_use")) == 2
    events = (
        (await session.execute(text("SELECT payload FROM webhook_event WHERE event_type = 'benefit.used' ORDER BY id")))
        .scalars()
        .all()
    )
    assert [(e["customer_id"], e["benefit_code"], e["policy_key"], e["tier"]) for e in events] == [
        ("U1", "lounge", "wealth", "wealth")
    ] * 2


async def test_a_use_without_entitlement_is_a_409_and_an_unknown_benefit_a_404(client, as_role, wealth, session):
    await add_benefit(client, as_role, "adviser", "private")
    await make_customer(client, as_role, "U2", "620000.00")
    refused = await use(client, as_role, "U2", "adviser")
    assert refused.status_code == 409 and refused.json()["code"] == "not_entitled"
    assert (await use(client, as_role, "U2", "none-such")).status_code == 404
    await add_benefit(client, as_role, "mobile-only", "wealth", channels=["mobile"])
    wrong = await use(client, as_role, "U2", "mobile-only", channel="branch")
    assert wrong.status_code == 422 and wrong.json()["errors"][0]["pointer"] == "/channel"
    assert await session.scalar(text("SELECT count(*) FROM webhook_event WHERE event_type = 'benefit.used'")) == 0


async def test_uses_are_listed_counted_per_tier_and_erased_with_the_customer(client, as_role, wealth, session):
    await add_benefit(client, as_role, "priority", "gold", "wealth")
    await make_customer(client, as_role, "U3", "620000.00")
    await make_customer(client, as_role, "U4", "620000.00")
    await make_customer(client, as_role, "U5", "60000.00")
    for customer in ("U3", "U3", "U3", "U4"):
        assert (await use(client, as_role, customer, "priority")).status_code == 201

    page = await client.get("/v1/customers/U3/benefit-uses", params={"limit": 2}, headers=as_role("app"))
    assert len(page.json()["items"]) == 2 and page.json()["next_cursor"]
    rest = await client.get(
        "/v1/customers/U3/benefit-uses",
        params={"limit": 2, "cursor": page.json()["next_cursor"]},
        headers=as_role("app"),
    )
    ids = [u["id"] for u in page.json()["items"] + rest.json()["items"]]
    assert len(ids) == 3 and ids == sorted(ids, reverse=True) and rest.json()["next_cursor"] is None
    one = await client.get(f"/v1/customers/U3/benefit-uses/{ids[0]}", headers=as_role("app"))
    assert one.status_code == 200 and one.json()["benefit_code"] == "priority"
    assert (await client.get(f"/v1/customers/U4/benefit-uses/{ids[0]}", headers=as_role("app"))).status_code == 404

    report = await client.get("/v1/reports/benefit-take-up", params={"policy_key": "wealth"}, headers=as_role("admin"))
    assert report.status_code == 200, report.text
    rows = {(r["benefit_code"], r["tier"]): r for r in report.json()["rows"]}
    assert rows[("priority", "wealth")] == {
        "benefit_code": "priority",
        "policy_key": "wealth",
        "tier": "wealth",
        "customers_in_tier": 2,
        "customers_using": 2,
        "uses": 4,
        "take_up_rate": 1.0,
    }
    assert (rows[("priority", "gold")]["customers_in_tier"], rows[("priority", "gold")]["take_up_rate"]) == (1, 0.0)

    assert (await client.delete("/v1/customers/U3", headers=as_role("admin"))).status_code == 204
    left = await session.execute(
        text(
            "SELECT count(*) FILTER (WHERE c.external_id = 'U4'), count(*) "
            "FROM benefit_use u JOIN customer c ON c.id = u.customer_id"
        )
    )
    assert tuple(left.one()) == (1, 1)
