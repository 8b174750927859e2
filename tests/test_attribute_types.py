"""A custom attribute's type cannot change while something depends on it: customers carrying a value of the old
type, or a rule (a tier policy version, a product's eligibility) comparing it as the old type. Either is a 409
naming what holds it; otherwise the type changes."""

from tests.factories import WEALTH_TIERS, add_products, customer_body


async def _declare(client, as_role, name: str, type_: str):
    return await client.put(f"/v1/attributes/custom/{name}", json={"type": type_}, headers=as_role("admin"))


async def test_a_type_carried_by_customers_cannot_change(client, as_role):
    assert (await _declare(client, as_role, "income", "number")).status_code == 200
    carried = await client.put(
        "/v1/customers/AT1", json=customer_body(attributes={"income": 52000}), headers=as_role("integration")
    )
    assert carried.status_code == 201, carried.text
    refused = await _declare(client, as_role, "income", "string")
    assert refused.status_code == 409 and refused.headers["content-type"] == "application/problem+json"
    assert "1 customers" in refused.json()["detail"]
    assert (await _declare(client, as_role, "income", "number")).status_code == 200  # same type: described again
    stored = await client.get("/v1/attributes/custom", headers=as_role("admin"))
    assert [(d["name"], d["type"]) for d in stored.json()["items"]] == [("income", "number")]
    # Once no customer carries it, the type may change.
    assert (
        await client.put("/v1/customers/AT1", json=customer_body(), headers=as_role("integration"))
    ).status_code == 200
    assert (await _declare(client, as_role, "income", "string")).status_code == 200


async def test_a_type_a_tier_policy_compares_cannot_change(client, as_role):
    assert (await _declare(client, as_role, "income", "number")).status_code == 200
    tiers = [
        {
            "code": "earner",
            "label": "Earner",
            "rank": 20,
            "condition": {"attr": "income", "op": "gte", "value": 100000},
        },
        WEALTH_TIERS[-1],
    ]
    created = await client.post(
        "/v1/tier-policies", headers=as_role("admin"), json={"policy_key": "earners", "name": "Earners", "tiers": tiers}
    )
    assert created.status_code == 201, created.text
    activated = await client.post("/v1/tier-policies/earners/versions/1/activate", headers=as_role("admin"))
    assert activated.status_code == 200, activated.text
    refused = await _declare(client, as_role, "income", "boolean")
    assert refused.status_code == 409, refused.text
    assert "tier policy earners v1" in refused.json()["detail"]
    # Allowed, it broke every customer write (the policy no longer compiled: 422 on PUT /v1/customers/...).
    customer = await client.put("/v1/customers/AT2", json=customer_body(), headers=as_role("integration"))
    assert customer.status_code == 201, customer.text
    retired = await client.post("/v1/tier-policies/earners/versions/1/retire", headers=as_role("admin"))
    assert retired.status_code == 200, retired.text
    assert (await _declare(client, as_role, "income", "boolean")).status_code == 200


async def test_a_type_a_product_s_eligibility_compares_cannot_change(client, as_role, session):
    await add_products(session)
    await session.commit()
    assert (await _declare(client, as_role, "income", "number")).status_code == 200
    patched = await client.patch(
        "/v1/products/equity_fund",
        headers=as_role("admin"),
        json={"eligibility": {"attr": "income", "op": "gte", "value": 30000}},
    )
    assert patched.status_code == 200, patched.text
    assert (await _declare(client, as_role, "income", "string")).status_code == 409


async def test_a_product_created_without_eligibility_holds_no_type(client, as_role):
    """POST a product with eligibility: null stores JSON null, which is no condition (it was read as one: a 422
    on every later type change, found by schemathesis)."""
    assert (await _declare(client, as_role, "income", "number")).status_code == 200
    product = {"product_code": "open-to-all", "name": "Open to all", "category": "deposit", "risk_level": 1}
    created = await client.post(
        "/v1/products", headers=as_role("admin"), json={**product, "channels": ["web"], "eligibility": None}
    )
    assert created.status_code == 201, created.text
    assert (await _declare(client, as_role, "income", "string")).status_code == 200
