"""Values the database cannot hold are the caller's error (422 problem+json), never a 500."""

import pytest


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/v1/attributes/custom/nul_probe", {"type": "string", "description": "before\u0000after"}),
        (
            "POST",
            "/v1/products",
            {
                "product_code": "nul-probe",
                "name": "Nul\u0000Product",
                "category": "deposit",
                "risk_level": 1,
                "min_amount": "0",
                "channels": ["mobile"],
            },
        ),
    ],
)
async def test_a_nul_character_in_text_is_a_422(client, as_role, method, path, body):
    response = await client.request(method, path, json=body, headers=as_role("admin"))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_id_beyond_bigint_is_a_422(client, as_role):
    response = await client.delete(f"/v1/api-keys/{2**70}", headers=as_role("admin"))
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
