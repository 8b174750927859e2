"""The audit log: every admin write to policies, products, keys and tier overrides leaves who, what, when, before
and after, in the write's own transaction; admins read it at GET /v1/audit with filters and a cursor."""

import json
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from app.tiering.policies import default_policies
from tests.factories import customer_body

PRODUCT = {
    "product_code": "audit-td",
    "name": "Audit deposit",
    "category": "deposit",
    "risk_level": 1,
    "min_amount": "1000.00",
    "channels": ["mobile", "web"],
}


async def _audit(client, admin, **params) -> list[dict]:
    response = await client.get("/v1/audit", headers=admin, params=params)
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_product_writes_are_audited_with_before_and_after(client, as_role):
    admin = as_role("admin")
    assert (await client.post("/v1/products", json=PRODUCT, headers=admin)).status_code == 201
    assert (await client.patch("/v1/products/audit-td", json={"name": "Renamed"}, headers=admin)).status_code == 200
    assert (await client.delete("/v1/products/audit-td", headers=admin)).status_code == 200
    events = await _audit(client, admin, entity_type="product")
    assert [e["action"] for e in events] == ["product.deactivate", "product.update", "product.create"]  # newest first
    deactivate, update, create = events
    assert all(e["actor"] == "test-admin" and e["entity_key"] == "audit-td" for e in events)
    assert create["before"] is None and create["after"]["name"] == "Audit deposit"
    assert update["before"]["name"] == "Audit deposit" and update["after"]["name"] == "Renamed"
    assert deactivate["before"]["is_active"] is True and deactivate["after"]["is_active"] is False
    assert datetime.fromisoformat(create["at"]) <= datetime.fromisoformat(deactivate["at"])


async def test_a_failed_write_leaves_no_audit_event(client, as_role):
    admin = as_role("admin")
    assert (await client.post("/v1/products", json=PRODUCT, headers=admin)).status_code == 201
    assert (await client.post("/v1/products", json=PRODUCT, headers=admin)).status_code == 409
    assert (await client.patch("/v1/products/audit-td", json={"risk_level": 9}, headers=admin)).status_code == 422
    assert [e["action"] for e in await _audit(client, admin, entity_type="product")] == ["product.create"]


async def test_api_key_events_hold_name_role_and_id_but_never_the_key(client, as_role, keys):
    admin = as_role("admin")
    created = await client.post("/v1/api-keys", json={"name": "crm-sync", "role": "integration"}, headers=admin)
    assert created.status_code == 201
    key_id, secret = created.json()["id"], created.json()["key"]
    assert (await client.delete(f"/v1/api-keys/{key_id}", headers=admin)).status_code == 200
    revoke, create = await _audit(client, admin, entity_type="api_key")
    assert create["action"] == "api_key.create" and create["entity_key"] == str(key_id)
    assert create["after"] == {"id": key_id, "name": "crm-sync", "role": "integration"}
    assert revoke["action"] == "api_key.revoke"
    assert revoke["before"]["revoked"] is False and revoke["after"]["revoked"] is True
    dumped = json.dumps([create, revoke])
    assert secret not in dumped and secret.split("_", 2)[2] not in dumped
    for key in keys.values():
        assert key not in dumped


async def test_policy_lifecycle_and_overrides_are_audited_without_personal_data(client, as_role):
    admin = as_role("admin")
    wealth = default_policies()[0].model_dump(mode="json", exclude_none=True)
    assert (await client.post("/v1/tier-policies", json=wealth, headers=admin)).status_code == 201
    assert (await client.post("/v1/tier-policies/wealth/versions/1/activate", headers=admin)).status_code == 200
    added = await client.post("/v1/tier-policies/wealth/versions", json={"copy_from": 1}, headers=admin)
    assert added.status_code == 201, added.text
    assert (await client.post("/v1/tier-policies/wealth/versions/2/activate", headers=admin)).status_code == 200

    name = "Quentin Auditworthy"
    assert (
        await client.put("/v1/customers/AUD-1", json=customer_body(display_name=name), headers=as_role("integration"))
    ).status_code == 201
    reason = "Private client of Quentin Auditworthy"
    put = await client.put(
        "/v1/customers/AUD-1/tiers/wealth/override", headers=admin, json={"tier": "private", "reason": reason}
    )
    assert put.status_code == 200, put.text
    assert (await client.delete("/v1/customers/AUD-1/tiers/wealth/override", headers=admin)).status_code == 200

    policy_events = await _audit(client, admin, entity_type="policy", entity_key="wealth")
    assert [e["action"] for e in policy_events] == [
        "policy.activate",
        "policy.version_create",
        "policy.activate",
        "policy.create",
    ]
    assert policy_events[0]["before"] == {"active_version": 1} and policy_events[0]["after"] == {"active_version": 2}
    assert policy_events[2]["before"] == {"active_version": None}
    assert policy_events[3]["after"]["tiers"][0]["code"] == "private"

    remove, set_ = await _audit(client, admin, entity_type="tier_override")
    assert set_["action"] == "tier_override.set" and set_["before"] == {"override": None}
    assert set_["after"]["override"] == "private"
    assert remove["action"] == "tier_override.remove" and remove["after"] == {"override": None}
    assert set_["entity_key"].startswith("customer:") and set_["entity_key"].endswith("/wealth")
    dumped = json.dumps(await _audit(client, admin))
    assert "AUD-1" not in dumped and "Auditworthy" not in dumped


async def test_audit_filters_by_action_and_time_and_pages_with_a_cursor(client, as_role):
    admin = as_role("admin")
    for i in range(5):
        body = {**PRODUCT, "product_code": f"audit-{i}"}
        assert (await client.post("/v1/products", json=body, headers=admin)).status_code == 201
    assert (await client.patch("/v1/products/audit-0", json={"name": "x"}, headers=admin)).status_code == 200
    assert [e["entity_key"] for e in await _audit(client, admin, action="product.update")] == ["audit-0"]

    seen, cursor = [], None
    while True:
        params = {"action": "product.create", "limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/audit", headers=admin, params=params)).json()
        seen += [e["entity_key"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"audit-{i}" for i in reversed(range(5))]

    now = datetime.now(UTC)
    assert await _audit(client, admin, **{"from": (now + timedelta(hours=1)).isoformat()}) == []
    assert len(await _audit(client, admin, to=(now + timedelta(hours=1)).isoformat())) == 6
    assert await _audit(client, admin, to=(now - timedelta(hours=1)).isoformat()) == []
    naive = await client.get("/v1/audit", headers=admin, params={"from": "2026-01-01T00:00:00"})
    assert naive.status_code == 422


async def test_only_admins_read_the_audit_log(client, as_role):
    for role in ("app", "integration"):
        assert (await client.get("/v1/audit", headers=as_role(role))).status_code == 403


async def test_an_erasure_is_audited_by_internal_id_with_no_personal_value(client, as_role, session):
    admin = as_role("admin")
    name = "Ottilie Erasable"
    profile = customer_body(display_name=name, birth_date="1951-02-03")
    assert (
        await client.put("/v1/customers/AUD-ERASE-1", json=profile, headers=as_role("integration"))
    ).status_code == 201
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'AUD-ERASE-1'"))
    assert (await client.delete("/v1/customers/AUD-ERASE-1", headers=admin)).status_code == 204
    assert (await client.delete("/v1/customers/AUD-ERASE-1", headers=admin)).status_code == 204  # nothing more to do

    [erase] = await _audit(client, admin, entity="customer")
    assert erase["action"] == "customer.erase" and erase["actor"] == "test-admin"
    assert erase["entity_key"] == str(customer_id)
    assert erase["before"] == {"erased": False} and erase["after"] == {"erased": True}
    dumped = json.dumps(await _audit(client, admin))
    for personal in ("AUD-ERASE-1", "Ottilie", "Erasable", "1951-02-03"):
        assert personal not in dumped


async def test_custom_attribute_definitions_are_audited_with_a_type_change_before_and_after(client, as_role):
    admin = as_role("admin")
    url = "/v1/attributes/custom/audit_score"
    declared = await client.put(url, json={"type": "integer", "description": "Score", "unit": "points"}, headers=admin)
    assert declared.status_code == 200, declared.text
    retyped = await client.put(url, json={"type": "number", "description": "Score", "unit": "points"}, headers=admin)
    assert retyped.status_code == 200, retyped.text
    in_use = await client.put(
        "/v1/customers/AUD-ATTR-1",
        json=customer_body(attributes={"audit_score": 1.5}),
        headers=as_role("integration"),
    )
    assert in_use.status_code == 201, in_use.text
    refused = await client.put(url, json={"type": "string", "description": "Score"}, headers=admin)
    assert refused.status_code == 409  # carried by a customer: refused, and not audited

    change, create = await _audit(client, admin, entity="custom_attribute")
    assert create["action"] == "custom_attribute.create" and create["entity_key"] == "audit_score"
    assert create["before"] is None
    assert create["after"] == {"type": "integer", "description": "Score", "unit": "points"}
    assert change["action"] == "custom_attribute.update" and change["actor"] == "test-admin"
    assert change["before"]["type"] == "integer" and change["after"]["type"] == "number"


async def test_tier_runs_are_audited_with_their_target_and_outcome(client, as_role, wealth, session):
    admin = as_role("admin")
    for i in range(3):
        profile = customer_body(display_name=f"Run Person{i}")
        assert (
            await client.put(f"/v1/customers/AUD-RUN-{i}", json=profile, headers=as_role("integration"))
        ).status_code == 201
    run = await client.post("/v1/tier-runs", json={"policy_key": "wealth"}, headers=admin)
    assert run.status_code == 202, run.text
    run_id = run.json()["id"]
    done = (await client.get(f"/v1/tier-runs/{run_id}", headers=admin)).json()
    assert done["status"] == "succeeded"

    finish, start = await _audit(client, admin, entity="tier_run", entity_key=str(run_id))
    assert start["action"] == "tier_run.start" and start["actor"] == "test-admin" and start["before"] is None
    assert start["after"] == {"policy": "wealth", "total": 3, "status": "running"}
    assert finish["action"] == "tier_run.finish" and finish["actor"] == "test-admin"
    assert finish["before"] == {"status": "running"}
    assert finish["after"] == {
        "status": "succeeded",
        "processed": 3,
        "upgrades": done["upgrades"],
        "downgrades": done["downgrades"],
        "error": None,
    }

    # A run whose worker is gone is failed by the next start: that outcome is audited too, as the run's.
    abandoned = await session.scalar(
        text(
            "INSERT INTO tier_run (policy_id, requested_by, total) "
            "SELECT id, 'nightly-cron', 3 FROM tier_policy WHERE key = 'wealth' RETURNING id"
        )
    )
    await session.commit()
    assert (await client.post("/v1/tier-runs", json={"policy_key": "wealth"}, headers=admin)).status_code == 202
    [failed] = await _audit(client, admin, entity="tier_run", entity_key=str(abandoned))
    assert failed["action"] == "tier_run.finish" and failed["actor"] == "nightly-cron"
    assert failed["after"]["status"] == "failed" and "abandoned" in failed["after"]["error"]
