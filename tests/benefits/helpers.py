"""Builders for the benefit tests: benefits through the API, customers with a balance (hence a wealth tier)."""

from datetime import date

from tests.factories import customer_body


def benefit_body(code: str, *attachments, **fields) -> dict:
    body = {
        "code": code,
        "kind": "service",
        "unit": "none",
        "channels": ["mobile", "branch"],
        "texts": {"en": {"name": f"{code} (en)", "description": "In English."}, "zh-CN": {"name": f"{code}（中文）"}},
        "attachments": [
            attachment if isinstance(attachment, dict) else {"policy_key": "wealth", "tier": attachment}
            for attachment in attachments
        ],
    }
    body.update(fields)
    return body


async def add_benefit(client, as_role, code: str, *attachments, **fields) -> dict:
    response = await client.post(
        "/v1/benefits", headers=as_role("admin"), json=benefit_body(code, *attachments, **fields)
    )
    assert response.status_code == 201, response.text
    return response.json()


async def make_customer(client, as_role, external_id: str, balance: str, **profile) -> None:
    response = await client.put(
        f"/v1/customers/{external_id}", json=customer_body(**profile), headers=as_role("integration")
    )
    assert response.status_code in (200, 201), response.text
    await set_balance(client, as_role, external_id, balance)


async def set_balance(client, as_role, external_id: str, balance: str) -> None:
    response = await client.put(
        f"/v1/customers/{external_id}/holdings",
        headers=as_role("integration"),
        json={"holdings": [{"product_code": "savings_account", "balance": balance, "as_of": date.today().isoformat()}]},
    )
    assert response.status_code == 200, response.text


async def benefits_of(client, as_role, external_id: str, **headers) -> dict:
    response = await client.get(f"/v1/customers/{external_id}/benefits", headers={**as_role("app"), **headers})
    assert response.status_code == 200, response.text
    return response.json()


async def tiers_of(client, as_role, external_id: str) -> dict:
    response = await client.get(f"/v1/customers/{external_id}/tiers", headers=as_role("app"))
    assert response.status_code == 200, response.text
    return {tier["policy_key"]: tier for tier in response.json()["tiers"]}
