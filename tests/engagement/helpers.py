"""Test helpers for engagement: customers through the API, the default loyalty policies active, and programmes."""

from datetime import UTC, datetime, timedelta

from app.recommendations.contact import load_default_contact_policy
from app.tiering.policies import load_default_policies
from tests.factories import add_products, customer_body

YOUNG = {"all": [{"attr": "age", "op": "lt", "value": 35}]}


def birth_for(age: int) -> str:
    return (datetime.now(UTC).date() - timedelta(days=365 * age + 100)).isoformat()


async def make_customer(client, as_role, external_id: str, **profile) -> None:
    response = await client.put(
        f"/v1/customers/{external_id}", json=customer_body(**profile), headers=as_role("integration")
    )
    assert response.status_code in (200, 201), response.text


async def default_policies(session) -> None:
    await add_products(session)
    await load_default_policies(session)
    await load_default_contact_policy(session)
    await session.commit()


async def open_community(client, as_role, key: str = "young-families", **fields) -> dict:
    body = {"key": key, "name": "Young families", "owner_team": "retail-engagement", "audience": YOUNG}
    body.update({"state": "open", **fields})
    response = await client.post("/v1/communities", json=body, headers=as_role("admin"))
    assert response.status_code == 201, response.text
    return response.json()


def ago(days: float = 0, hours: float = 0) -> str:
    return (datetime.now(UTC) - timedelta(days=days, hours=hours)).isoformat()
