"""Limits that hold: oversized batches, pages, strings and rule documents are refused with 413 or 422 at once."""

import json


async def test_event_batch_over_the_limit_is_422(client, as_role):
    event = {"type": "login", "event_id": "x", "customer_id": "C1", "occurred_at": "2026-01-01T00:00:00Z"}
    response = await client.post(
        "/v1/events",
        headers=as_role("integration"),
        json={"events": [dict(event, event_id=str(i)) for i in range(10_001)]},
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["pointer"] == "/events"


async def test_feedback_batch_over_the_limit_is_422(client, as_role):
    event = {
        "event_id": "x",
        "recommendation_id": "00000000-0000-0000-0000-000000000000",
        "customer_id": "C1",
        "type": "impression",
        "occurred_at": "2026-01-01T00:00:00Z",
    }
    response = await client.post(
        "/v1/feedback/events",
        headers=as_role("app"),
        json={"events": [dict(event, event_id=str(i)) for i in range(1_001)]},
    )
    assert response.status_code == 422


async def test_page_size_over_the_limit_is_422(client, as_role):
    response = await client.get("/v1/customers", params={"limit": 501}, headers=as_role("admin"))
    assert response.status_code == 422 and response.json()["errors"][0]["parameter"] == "limit"


async def test_overlong_strings_are_422(client, as_role):
    response = await client.put(
        "/v1/customers/C1",
        headers=as_role("integration"),
        json={"segment": "retail", "onboarded_at": "2020-01-01T00:00:00Z", "display_name": "x" * 201},
    )
    assert response.status_code == 422 and response.json()["errors"][0]["pointer"] == "/display_name"


async def test_rule_documents_too_deep_or_too_large_are_422(client, as_role):
    deep = {"attr": "aum", "op": "gte", "value": 1}
    for _ in range(10):
        deep = {"not": deep}
    tiers = [{"code": "a", "label": "A", "rank": 1, "condition": deep}]
    too_deep = await client.post(
        "/v1/tier-policies", headers=as_role("admin"), json={"policy_key": "deep", "name": "Deep", "tiers": tiers}
    )
    assert too_deep.status_code == 422 and too_deep.json()["errors"][0]["pointer"].startswith("/tiers/0/condition")
    wide = {"any": [{"attr": "aum", "op": "gte", "value": i} for i in range(250)]}
    too_large = await client.post(
        "/v1/tier-policies",
        headers=as_role("admin"),
        json={
            "policy_key": "wide",
            "name": "Wide",
            "tiers": [{"code": "a", "label": "A", "rank": 1, "condition": wide}],
        },
    )
    assert too_large.status_code == 422


async def test_bodies_over_the_size_limit_are_413_before_being_read(client, as_role):
    big = json.dumps({"name": "x" * 2_000_000, "role": "app"})
    response = await client.post(
        "/v1/api-keys", content=big, headers={**as_role("admin"), "Content-Type": "application/json"}
    )
    assert response.status_code == 413
