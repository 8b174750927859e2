"""Builders for the manager tests: managers through the API, customers with a balance (hence a wealth tier)."""

from tests.benefits.helpers import make_customer, set_balance  # noqa: F401  (re-exported for the tests)


def manager_body(manager_id: str, *tiers: str, capacity: int = 10, **fields) -> dict:
    body = {
        "manager_id": manager_id,
        "name": f"Manager {manager_id}",
        "team": "wealth-east",
        "serves": {"policy_key": "wealth", "tiers": list(tiers or ("private", "wealth"))},
        "capacity": capacity,
    }
    body.update(fields)
    return body


async def add_manager(client, as_role, manager_id: str, *tiers: str, capacity: int = 10, **fields) -> dict:
    response = await client.post(
        "/v1/relationship-managers",
        headers=as_role("admin"),
        json=manager_body(manager_id, *tiers, capacity=capacity, **fields),
    )
    assert response.status_code == 201, response.text
    return response.json()


async def run(client, as_role) -> dict:
    response = await client.post("/v1/manager-assignment-runs", headers=as_role("admin"), json={})
    assert response.status_code == 201, response.text
    return response.json()


async def manager_of(client, as_role, customer: str) -> str | None:
    response = await client.get(f"/v1/customers/{customer}/relationship-manager", headers=as_role("admin"))
    assert response.status_code == 200, response.text
    manager = response.json()["manager"]
    return manager["manager_id"] if manager else None
