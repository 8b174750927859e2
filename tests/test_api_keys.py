"""API keys: shown once, stored hashed, scoped by role, revoked at once."""

from sqlalchemy import text


async def test_created_key_works_and_is_stored_only_as_a_hash(client, as_role, session):
    created = await client.post("/v1/api-keys", json={"name": "mobile", "role": "app"}, headers=as_role("admin"))
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    assert key.startswith("tw_")
    stored = (await session.execute(text("SELECT key_hash FROM api_key WHERE name = 'mobile'"))).scalar_one()
    assert key not in stored and len(stored) == 64
    listed = await client.get("/v1/api-keys", headers=as_role("admin"))
    assert all("key" not in item and "key_hash" not in item for item in listed.json()["items"])
    # an app key cannot manage keys
    assert (await client.get("/v1/api-keys", headers={"X-API-Key": key})).status_code == 403


async def test_revoked_key_stops_working_at_once(client, as_role):
    created = (
        await client.post("/v1/api-keys", json={"name": "tmp", "role": "admin"}, headers=as_role("admin"))
    ).json()
    headers = {"X-API-Key": created["key"]}
    assert (await client.get("/v1/api-keys", headers=headers)).status_code == 200
    revoked = await client.delete(f"/v1/api-keys/{created['id']}", headers=as_role("admin"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert (await client.get("/v1/api-keys", headers=headers)).status_code == 401


async def test_a_key_with_a_forged_secret_is_refused(client, keys):
    forged = keys["admin"][:-4] + "AAAA"
    assert (await client.get("/v1/api-keys", headers={"X-API-Key": forged})).status_code == 401
