"""Webhook subscriptions through HTTP: validation with pointers, the allow-list, the secret shown once and sealed at
rest, cursor pages, the event-type catalogue, admin only, and every write audited without the secret."""

import json

import httpx
from sqlalchemy import text

from app.main import create_app

HOOK = {"url": "http://127.0.0.1:9/hooks", "event_types": ["tier.upgraded", "complaint.status_changed"]}


async def test_a_subscription_shows_its_secret_once_and_stores_it_sealed(client, as_role, session):
    admin = as_role("admin")
    created = await client.post("/v1/webhooks", json=HOOK, headers=admin)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["secret"].startswith("whsec_") and body["status"] == "active"
    assert body["event_types"] == ["complaint.status_changed", "tier.upgraded"]
    got = await client.get(created.headers["Location"], headers=admin)
    assert "secret" not in got.json() and got.json()["url"] == HOOK["url"]
    listed = (await client.get("/v1/webhooks", headers=admin)).json()
    assert body["secret"] not in json.dumps(listed) and "secret" not in listed["items"][0]
    assert listed["items"][0]["id"] == body["id"]
    stored = await session.scalar(text("SELECT secret_sealed FROM webhook_subscription"))
    assert body["secret"].encode() not in stored
    audit = (await client.get("/v1/audit?entity_type=webhook", headers=admin)).json()["items"]
    assert audit[0]["action"] == "webhook.create" and audit[0]["actor"] == "test-admin"
    assert body["secret"] not in json.dumps(audit)


async def test_bad_subscriptions_are_422_with_a_pointer(client, as_role):
    admin = as_role("admin")
    cases = [
        ({**HOOK, "url": "ftp://hooks.example/x"}, "/url"),
        ({**HOOK, "url": "https://user:pass@hooks.example/x"}, "/url"),
        ({**HOOK, "url": "https://hooks.example:99999/x"}, "/url"),
        ({**HOOK, "event_types": ["tier.exploded"]}, "/event_types/0"),
        ({**HOOK, "event_types": []}, "/event_types"),
        ({**HOOK, "status": "sleeping"}, "/status"),
    ]
    for body, pointer in cases:
        response = await client.post("/v1/webhooks", json=body, headers=admin)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["pointer"] == pointer, response.json()
    null = await client.post("/v1/webhooks", json=HOOK, headers=admin)
    patched = await client.patch(null.headers["Location"], json={"url": None}, headers=admin)
    assert patched.status_code == 422 and patched.json()["errors"][0]["pointer"] == "/url"


async def test_the_allow_list_restricts_hosts_when_set(test_settings, sessionmaker, keys):
    settings = test_settings.model_copy(update={"webhook_allowed_hosts": "hooks.bank.example, .internal.example"})
    app = create_app(settings, sessionmaker=sessionmaker)
    admin = {"X-API-Key": keys["admin"]}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        for url, status in (
            ("https://hooks.bank.example/x", 201),
            ("https://a.internal.example/x", 201),
            ("http://127.0.0.1:9/x", 422),
            ("https://evil-hooks.bank.example/x", 422),
        ):
            response = await client.post("/v1/webhooks", json={**HOOK, "url": url}, headers=admin)
            assert response.status_code == status, (url, response.text)
        allowed = (await client.get("/v1/webhooks", headers=admin)).json()["items"][0]
        moved = await client.patch(f"/v1/webhooks/{allowed['id']}", json={"url": "http://localhost/x"}, headers=admin)
        assert moved.status_code == 422 and moved.json()["errors"][0]["pointer"] == "/url"


async def test_subscriptions_page_with_a_cursor(client, as_role):
    admin = as_role("admin")
    ids = [(await client.post("/v1/webhooks", json=HOOK, headers=admin)).json()["id"] for _ in range(5)]
    seen, cursor = [], None
    while True:
        page = (
            await client.get(
                "/v1/webhooks", params={"limit": 2, **({"cursor": cursor} if cursor else {})}, headers=admin
            )
        ).json()
        seen += [item["id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids
    bad = await client.get("/v1/webhooks", params={"cursor": "nonsense"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["parameter"] == "cursor"


async def test_the_event_type_catalogue_lists_each_type_with_its_payload_schema(client, as_role):
    types = (await client.get("/v1/webhooks/event-types", headers=as_role("admin"))).json()["items"]
    by_name = {t["name"]: t for t in types}
    assert {
        "tier.upgraded",
        "tier.downgraded",
        "tier.at_risk",
        "benefit.used",
        "complaint.status_changed",
    } <= by_name.keys()
    schema = by_name["complaint.status_changed"]["payload_schema"]
    assert {"complaint_id", "customer_id", "from_status", "to_status"} <= schema["properties"].keys()
    assert "note" not in schema["properties"] and "description" not in schema["properties"]  # free text stays out


async def test_event_payloads_name_the_policy_policy_key_like_the_api(client, as_role):
    """One name per thing: a payload that names a policy calls it `policy_key`, in its schema and its example."""
    types = (await client.get("/v1/webhooks/event-types", headers=as_role("admin"))).json()["items"]
    naming_a_policy = {"tier.upgraded", "tier.downgraded", "tier.at_risk", "benefit.used"}
    for event_type in types:
        schema = event_type["payload_schema"]
        assert "policy" not in schema["properties"], event_type["name"]
        for example in schema.get("examples", []):
            assert "policy" not in example, event_type["name"]
        if event_type["name"] in naming_a_policy:
            assert "policy_key" in schema["properties"], event_type["name"]
            assert all(example["policy_key"] == "wealth" for example in schema["examples"]), event_type["name"]


async def test_only_admins_manage_webhooks(client, as_role):
    for role in ("app", "integration"):
        assert (await client.get("/v1/webhooks", headers=as_role(role))).status_code == 403
        assert (await client.post("/v1/webhooks", json=HOOK, headers=as_role(role))).status_code == 403


async def test_rotation_and_deletion_are_audited_and_deleting_drops_pending_deliveries(client, as_role, session):
    admin = as_role("admin")
    created = (await client.post("/v1/webhooks", json=HOOK, headers=admin)).json()
    rotated = await client.post(f"/v1/webhooks/{created['id']}/rotate-secret", headers=admin)
    assert rotated.status_code == 200 and rotated.json()["secret"] != created["secret"]
    assert rotated.json()["previous_secret_expires_at"] is not None  # the default overlap
    retired = await client.post(f"/v1/webhooks/{created['id']}/rotate-secret", json={"overlap_hours": 0}, headers=admin)
    assert retired.json()["previous_secret_expires_at"] is None
    assert (await client.delete(f"/v1/webhooks/{created['id']}", headers=admin)).status_code == 204
    assert (await client.delete(f"/v1/webhooks/{created['id']}", headers=admin)).status_code == 404
    actions = [a["action"] for a in (await client.get("/v1/audit?entity_type=webhook", headers=admin)).json()["items"]]
    assert actions == ["webhook.delete", "webhook.rotate_secret", "webhook.rotate_secret", "webhook.create"]
    audit_text = json.dumps((await client.get("/v1/audit?entity_type=webhook", headers=admin)).json())
    assert rotated.json()["secret"] not in audit_text and created["secret"] not in audit_text
