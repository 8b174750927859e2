"""Product catalog API: create, read, update, list, deactivate; validation, conflicts and scopes."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from app.products import service as products_service
from app.products.errors import ProductCodeTaken
from app.products.models import Product
from app.products.schemas import ProductCreate

PROBLEM_JSON = "application/problem+json"


def product_body(code: str, **overrides) -> dict:
    body = {
        "product_code": code,
        "name": f"Product {code}",
        "category": "deposit",
        "risk_level": 1,
        "min_amount": "1000.00",
        "channels": ["mobile", "web"],
    }
    body.update(overrides)
    return body


@pytest.fixture
def admin(as_role) -> dict[str, str]:
    return as_role("admin")


@pytest.fixture
def create_product(client, admin):
    async def create(code: str, **overrides) -> dict:
        response = await client.post("/v1/products", json=product_body(code, **overrides), headers=admin)
        assert response.status_code == 201, response.text
        return response.json()

    return create


def assert_problem(response, status: int, *, pointer: str | None = None, parameter: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    if pointer is not None:
        assert pointer in {e.get("pointer") for e in body["errors"]}, body
    if parameter is not None:
        assert parameter in {e.get("parameter") for e in body["errors"]}, body
    return body


async def walk(client, headers, query: str, limit: int = 500) -> list[list[dict]]:
    """Every page of GET /v1/products?{query}, following next_cursor."""
    pages, cursor = [], None
    while True:
        params = f"{query}&limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = await client.get(f"/v1/products?{params}", headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            return pages


async def test_created_product_is_returned_with_every_field_and_readable_by_code(client, admin, as_role):
    body = product_body(
        "td-12m",
        name="12-month term deposit",
        min_amount="12345678901234.56",
        channels=["mobile", "web", "branch"],
        active_from="2026-01-01T00:00:00+02:00",
        active_to="2026-12-31T23:59:59Z",
        value_weight="1.2",
        lever="0.75",
        target_tiers=["mass", "affluent"],
        is_service=False,
        description="Fixed rate.",
        eligibility={"all": [{"attr": "age", "op": "gte", "value": 18}]},
    )
    created = await client.post("/v1/products", json=body, headers=admin)
    assert created.status_code == 201, created.text
    product = created.json()
    assert product["product_code"] == "td-12m" and product["category"] == "deposit" and product["risk_level"] == 1
    assert Decimal(product["min_amount"]) == Decimal("12345678901234.56")  # every digit kept: never a float
    assert Decimal(product["value_weight"]) == Decimal("1.2") and Decimal(product["lever"]) == Decimal("0.75")
    assert product["channels"] == ["mobile", "web", "branch"]
    assert datetime.fromisoformat(product["active_from"]) == datetime(2025, 12, 31, 22, tzinfo=UTC)
    assert product["eligibility"] == body["eligibility"]
    assert product["target_tiers"] == ["mass", "affluent"]
    assert product["is_active"] is True and product["created_at"] and product["updated_at"]

    read = await client.get("/v1/products/td-12m", headers=as_role("app"))
    assert read.status_code == 200
    assert read.json() == product


async def test_defaults_apply_when_optional_fields_are_omitted(client, admin):
    minimal = {
        "product_code": "card-basic",
        "name": "Basic debit card",
        "category": "card",
        "risk_level": 1,
        "channels": ["branch"],
    }
    product = (await client.post("/v1/products", json=minimal, headers=admin)).json()
    assert Decimal(product["min_amount"]) == 0
    assert Decimal(product["value_weight"]) == 1 and Decimal(product["lever"]) == 1
    assert product["target_tiers"] == [] and product["eligibility"] is None
    assert product["active_from"] is None and product["active_to"] is None
    assert product["is_service"] is False and product["description"] == "" and product["is_active"] is True


async def test_duplicate_code_is_409_even_for_a_deactivated_product(client, admin, create_product):
    await create_product("fund-balanced-r3", category="fund", risk_level=3)
    await client.delete("/v1/products/fund-balanced-r3", headers=admin)
    again = await client.post("/v1/products", json=product_body("fund-balanced-r3"), headers=admin)
    body = assert_problem(again, 409)
    assert "fund-balanced-r3" in body["detail"]


async def test_insert_losing_a_race_on_the_code_is_409_and_leaves_the_transaction_usable(session, monkeypatch):
    fields = ProductCreate.model_validate(product_body("race-1"))
    await products_service.create_product(session, fields)

    async def nothing_found(*_args):  # as if another request inserted the code after our pre-check
        return None

    monkeypatch.setattr(products_service, "find_product", nothing_found)
    with pytest.raises(ProductCodeTaken):
        await products_service.create_product(session, fields)
    count = await session.scalar(select(func.count()).select_from(Product).where(Product.code == "race-1"))
    assert count == 1


async def test_unknown_code_is_404_problem_json_on_every_route(client, admin):
    for method, kwargs in (("GET", {}), ("PATCH", {"json": {"name": "x"}}), ("DELETE", {})):
        response = await client.request(method, "/v1/products/no-such-product", headers=admin, **kwargs)
        body = assert_problem(response, 404)
        assert body["type"].endswith("/not-found") and "no-such-product" in body["detail"]


async def test_patch_changes_only_the_given_fields_and_moves_updated_at(client, admin, create_product):
    before = await create_product("td-6m", description="Six months.", target_tiers=["mass"])
    patch = {
        "name": "6-month term deposit",
        "lever": "1.5",
        "channels": ["mobile"],
        "active_to": "2027-06-30T23:59:59Z",
    }
    response = await client.patch("/v1/products/td-6m", json=patch, headers=admin)
    assert response.status_code == 200, response.text
    after = response.json()
    assert after["name"] == "6-month term deposit" and Decimal(after["lever"]) == Decimal("1.5")
    assert after["channels"] == ["mobile"] and after["active_to"].startswith("2027-06-30T23:59:59")
    for unchanged in ("description", "target_tiers", "min_amount", "category", "created_at", "product_code"):
        assert after[unchanged] == before[unchanged]
    assert datetime.fromisoformat(after["updated_at"]) > datetime.fromisoformat(before["updated_at"])
    assert (await client.get("/v1/products/td-6m", headers=admin)).json() == after


async def test_patch_null_clears_window_and_eligibility_but_not_required_fields(client, admin, create_product):
    await create_product("loan-car", category="loan", active_from="2026-01-01T00:00:00Z", eligibility={"always": True})
    cleared = await client.patch(
        "/v1/products/loan-car", json={"active_from": None, "eligibility": None}, headers=admin
    )
    assert cleared.status_code == 200, cleared.text
    assert cleared.json()["active_from"] is None and cleared.json()["eligibility"] is None
    refused = await client.patch("/v1/products/loan-car", json={"name": None, "channels": None}, headers=admin)
    body = assert_problem(refused, 422, pointer="/name")
    assert "/channels" in {e["pointer"] for e in body["errors"]}


async def test_patch_checks_the_window_against_stored_values(client, admin, create_product):
    await create_product("ins-travel", category="insurance", active_from="2026-03-01T00:00:00Z")
    # each field valid alone, the window broken with the stored start: 409 (app/core/patching.py)
    response = await client.patch("/v1/products/ins-travel", json={"active_to": "2026-02-01T00:00:00Z"}, headers=admin)
    assert_problem(response, 409, pointer="/active_to")
    # both ends sent and out of order: the PATCH alone is wrong, 422
    both = {"active_from": "2026-03-01T00:00:00Z", "active_to": "2026-02-01T00:00:00Z"}
    assert_problem(await client.patch("/v1/products/ins-travel", json=both, headers=admin), 422, pointer="/active_to")
    for invalid, pointer in (
        ({"risk_level": 0}, "/risk_level"),
        ({"product_code": "renamed"}, "/product_code"),
        ({"channels": []}, "/channels"),
        ({"active_to": "2026-05-01T00:00:00"}, "/active_to"),
    ):
        response = await client.patch("/v1/products/ins-travel", json=invalid, headers=admin)
        assert_problem(response, 422, pointer=pointer)
    assert (await client.get("/v1/products/ins-travel", headers=admin)).json()["active_to"] is None


async def test_delete_deactivates_idempotently_and_patch_reactivates(client, admin, create_product):
    await create_product("card-gold", category="card", risk_level=2)
    first = await client.delete("/v1/products/card-gold", headers=admin)
    assert first.status_code == 200 and first.json()["is_active"] is False
    second = await client.delete("/v1/products/card-gold", headers=admin)
    assert second.status_code == 200 and second.json() == first.json()
    read = await client.get("/v1/products/card-gold", headers=admin)
    assert read.status_code == 200 and read.json()["is_active"] is False
    reactivated = await client.patch("/v1/products/card-gold", json={"is_active": True}, headers=admin)
    assert reactivated.json()["is_active"] is True


async def test_list_filters_by_category_channel_and_active(client, admin, create_product):
    await create_product("f-dep-mobile", category="deposit", channels=["mobile"])
    await create_product("f-fund-web", category="fund", risk_level=3, channels=["web", "rm"])
    await create_product("f-fund-mobile-off", category="fund", risk_level=4, channels=["mobile", "branch"])
    await client.delete("/v1/products/f-fund-mobile-off", headers=admin)
    ours = {"f-dep-mobile", "f-fund-web", "f-fund-mobile-off"}

    async def codes(query: str) -> set[str]:
        items = [item for page in await walk(client, admin, query) for item in page]
        return {item["product_code"] for item in items} & ours

    assert await codes("") == ours
    assert await codes("category=fund") == {"f-fund-web", "f-fund-mobile-off"}
    assert await codes("channel=mobile") == {"f-dep-mobile", "f-fund-mobile-off"}
    assert await codes("channel=rm") == {"f-fund-web"}
    assert await codes("active=true") == {"f-dep-mobile", "f-fund-web"}
    assert await codes("active=false") == {"f-fund-mobile-off"}
    assert await codes("category=fund&channel=mobile&active=true") == set()
    for item in (item for page in await walk(client, admin, "category=fund&active=true") for item in page):
        assert item["category"] == "fund" and item["is_active"] is True


async def test_list_pages_through_the_catalog_in_creation_order(client, admin, create_product):
    created = [f"page-{n}" for n in range(7)]
    for code in created:
        await create_product(code)
    pages = await walk(client, admin, "", limit=3)
    assert len(pages) >= 3 and all(len(page) <= 3 for page in pages)
    seen = [item["product_code"] for page in pages for item in page]
    assert len(seen) == len(set(seen))  # no product twice
    assert [code for code in seen if code in created] == created


async def test_list_refuses_bad_query_parameters(client, admin):
    assert_problem(await client.get("/v1/products?cursor=garbage", headers=admin), 422, parameter="cursor")
    assert_problem(await client.get("/v1/products?category=savings", headers=admin), 422, parameter="category")
    assert_problem(await client.get("/v1/products?limit=0", headers=admin), 422, parameter="limit")


@pytest.mark.parametrize(
    ("overrides", "pointer"),
    [
        ({"category": "crypto"}, "/category"),
        ({"risk_level": 6}, "/risk_level"),
        ({"min_amount": "-0.01"}, "/min_amount"),
        ({"min_amount": "10.005"}, "/min_amount"),
        ({"channels": []}, "/channels"),
        ({"channels": ["mobile", "mobile"]}, "/channels"),
        ({"channels": ["sms"]}, "/channels/0"),
        ({"active_from": "2026-06-01T00:00:00Z", "active_to": "2026-05-01T00:00:00Z"}, "/active_to"),
        ({"active_from": "2026-06-01T00:00:00Z", "active_to": "2026-06-01T00:00:00Z"}, "/active_to"),
        ({"active_from": "2026-06-01T00:00:00"}, "/active_from"),
        ({"colour": "gold"}, "/colour"),
        ({"product_code": "Has Spaces"}, "/product_code"),
        ({"product_code": "x"}, "/product_code"),
        ({"name": ""}, "/name"),
        ({"value_weight": "0"}, "/value_weight"),
        ({"lever": "100.01"}, "/lever"),
        ({"target_tiers": ["gold tier"]}, "/target_tiers/0"),
        ({"eligibility": ["not", "an", "object"]}, "/eligibility"),
        ({"description": "x" * 2001}, "/description"),
    ],
)
async def test_invalid_product_is_422_pointing_at_the_field(client, admin, overrides, pointer):
    body = {**product_body("bad-product"), **overrides}
    response = await client.post("/v1/products", json=body, headers=admin)
    body = assert_problem(response, 422, pointer=pointer)
    assert body["type"].endswith("/validation-failed")


async def test_app_and_integration_keys_read_but_cannot_write(client, as_role, create_product):
    await create_product("td-3m")
    for role in ("app", "integration"):
        headers = as_role(role)
        assert (await client.get("/v1/products", headers=headers)).status_code == 200
        assert (await client.get("/v1/products/td-3m", headers=headers)).status_code == 200
        assert_problem(await client.post("/v1/products", json=product_body("td-9m"), headers=headers), 403)
        assert_problem(await client.patch("/v1/products/td-3m", json={"lever": "2"}, headers=headers), 403)
        assert_problem(await client.delete("/v1/products/td-3m", headers=headers), 403)


async def test_requests_without_a_key_are_401(client):
    for method, path, kwargs in (
        ("GET", "/v1/products", {}),
        ("GET", "/v1/products/td-12m", {}),
        ("POST", "/v1/products", {"json": product_body("td-1m")}),
        ("PATCH", "/v1/products/td-12m", {"json": {"lever": "2"}}),
        ("DELETE", "/v1/products/td-12m", {}),
    ):
        response = await client.request(method, path, **kwargs)
        assert_problem(response, 401)
        assert response.headers["www-authenticate"] == "ApiKey"


async def test_eligibility_is_checked_against_the_attribute_catalog(client, admin):
    unknown = await client.post(
        "/v1/products",
        headers=admin,
        json=product_body(
            "elig_unknown",
            eligibility={
                "all": [{"attr": "aum", "op": "gte", "value": 1000}, {"attr": "wealthiness", "op": "gte", "value": 1}]
            },
        ),
    )
    assert_problem(unknown, 422, pointer="/eligibility/all/1/attr")
    wrong_type = await client.post(
        "/v1/products",
        headers=admin,
        json=product_body("elig_type", eligibility={"attr": "segment", "op": "eq", "value": 5}),
    )
    assert_problem(wrong_type, 422, pointer="/eligibility/value")
    good = await client.post(
        "/v1/products",
        headers=admin,
        json=product_body(
            "elig_ok",
            eligibility={
                "any": [
                    {"attr": "segment", "op": "eq", "value": "small_business"},
                    {"attr": "aum_avg_3m", "op": "between", "value": [1000, 5000]},
                ]
            },
        ),
    )
    assert good.status_code == 201, good.text
    assert good.json()["eligibility"]["any"][1]["value"] == [1000, 5000]
