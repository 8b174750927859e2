"""API keys never reach the logs: not the caller's key, not a new key, not a wrong key, on success or error."""

import logging

from app.core.logging import JsonFormatter


async def test_no_log_record_carries_an_api_key(client, keys, as_role, caplog):
    caplog.set_level(logging.DEBUG)
    created = await client.post("/v1/api-keys", json={"name": "log-probe", "role": "app"}, headers=as_role("admin"))
    assert created.status_code == 201
    new_key = created.json()["key"]
    unknown = "tw_abcdefabcdef_" + "s" * 43
    await client.get("/v1/products", headers={"X-API-Key": new_key})
    await client.get("/v1/products", headers={"X-API-Key": unknown})
    await client.get("/v1/audit", headers=as_role("app"))  # 403
    await client.put("/v1/customers/LOG-1", json={"segment": "nope"}, headers=as_role("integration"))  # 422
    assert len(caplog.records) >= 5  # the access log saw every request
    formatter = JsonFormatter()
    secrets = [new_key, unknown, *keys.values()]
    for record in caplog.records:
        line = formatter.format(record) + repr(vars(record))
        for secret in secrets:
            assert secret not in line, f"an API key leaked into the log: {record.name}"
            assert secret.split("_", 2)[2][:16] not in line  # the secret part (it may itself hold "_")
