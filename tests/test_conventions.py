"""One way everywhere (issue 17): every POST that creates honours Idempotency-Key (the first response replayed for
the same key and body, 422 for another body) and answers 201/202 with a Location that can be read; tier runs are
listed newest first."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import text

from tests.factories import WEALTH_TIERS, customer_body

AGO = (datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0).isoformat()
SURVEY = {
    "event_id": "idem-s-1",
    "customer_id": "ID1",
    "kind": "nps",
    "score": 9,
    "channel": "mobile",
    "touchpoint": "app_rating_prompt",
    "occurred_at": AGO,
}
COMPLAINT = {"event_id": "idem-c-1", "customer_id": "ID1", "category": "fees", "channel": "phone", "description": "x"}
PRODUCT = {"code": "idem_fund", "name": "Idem fund", "category": "fund", "risk_level": 3, "channels": ["mobile"]}

# (role, path, body, another body, success status, the table whose rows are counted)
CREATES = {
    "api key": ("admin", "/v1/api-keys", {"name": "idem", "role": "app"}, {"name": "idem", "role": "admin"}, 201,
                "api_key"),
    "tier policy": ("admin", "/v1/tier-policies", {"key": "idem", "name": "Idem", "tiers": WEALTH_TIERS},
                    {"key": "idem", "name": "Idem 2", "tiers": WEALTH_TIERS}, 201, "tier_policy"),
    "policy version": ("admin", "/v1/tier-policies/wealth/versions", {"copy_from": 1},
                       {"copy_from": 1, "description": "another"}, 201, "tier_policy_version"),
    "tier run": ("admin", "/v1/tier-runs", {"policy": "wealth"}, {"all": True}, 202, "tier_run"),
    "survey": ("app", "/v1/feedback/surveys", SURVEY, {**SURVEY, "score": 3}, 201, "survey_response"),
    "complaint": ("app", "/v1/feedback/complaints", COMPLAINT, {**COMPLAINT, "category": "service"}, 201,
                  "complaint"),
    "complaint transition": ("admin", "/v1/feedback/complaints/{complaint}/transitions", {"to": "in_progress"},
                             {"to": "resolved"}, 200, "complaint_transition"),
    "product": ("admin", "/v1/products", PRODUCT, {**PRODUCT, "name": "Other"}, 201, "product"),
}  # fmt: skip


@pytest.fixture
async def complaint(client, as_role, wealth) -> int:
    assert (await client.put("/v1/customers/ID1", headers=as_role("integration"), json=customer_body())).status_code
    opened = await client.post(
        "/v1/feedback/complaints", headers=as_role("app"), json={**COMPLAINT, "event_id": "idem-c-0"}
    )
    assert opened.status_code == 201, opened.text
    return opened.json()["id"]


@pytest.mark.parametrize("name", list(CREATES))
async def test_every_creating_post_replays_its_first_response_for_the_same_key(
    name, client, as_role, session, complaint
):
    role, path, body, other, expected, table = CREATES[name]
    path = path.format(complaint=complaint)
    headers = {**as_role(role), "Idempotency-Key": f"idem-{name.replace(' ', '-')}"}
    before = await session.scalar(text(f"SELECT count(*) FROM {table}"))
    first = await client.post(path, headers=headers, json=body)
    assert first.status_code == expected, first.text
    assert "Idempotent-Replayed" not in first.headers
    again = await client.post(path, headers=headers, json=body)
    assert again.status_code == expected and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == before + 1  # written once
    refused = await client.post(path, headers=headers, json=other)
    assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"][0]["parameter"] == "Idempotency-Key"
    assert await session.scalar(text(f"SELECT count(*) FROM {table}")) == before + 1
    if expected in (201, 202):
        location = first.headers["Location"]
        assert again.headers["Location"] == location
        read = await client.get(location, headers=as_role("admin"))
        assert read.status_code == 200, (location, read.text)
    else:
        assert "Location" not in first.headers


def test_every_creating_post_documents_the_key_and_a_location(app):
    spec = app.openapi()
    documented = {}
    for path, operations in spec["paths"].items():
        post = operations.get("post")
        if post and any(p["name"] == "Idempotency-Key" for p in post.get("parameters", [])):
            documented[path] = post
    for _, path, *_rest in CREATES.values():
        path = path.replace("{complaint}", "{complaint_id}").replace("/wealth/", "/{key}/")
        assert path in documented, path
        created = {s: r for s, r in documented[path]["responses"].items() if s in ("201", "202")}
        assert all("Location" in r["headers"] for r in created.values()), path


async def test_tier_runs_are_listed_newest_first_page_by_page(client, as_role, wealth):
    admin = as_role("admin")
    started = []
    for _ in range(3):
        run = await client.post("/v1/tier-runs", headers=admin, json={"policy": "wealth"})
        assert run.status_code == 202, run.text
        assert run.headers["Location"] == f"/v1/tier-runs/{run.json()['id']}"
        started.append(run.json()["id"])
    first = (await client.get("/v1/tier-runs", headers=admin, params={"limit": 2})).json()
    assert [r["id"] for r in first["items"]] == started[::-1][:2]
    assert first["items"][0]["policy"] == "wealth" and first["next_cursor"]
    rest = (await client.get("/v1/tier-runs", headers=admin, params={"cursor": first["next_cursor"]})).json()
    assert rest["items"][0]["id"] == started[0] and rest["next_cursor"] is None  # then the activation's run
    failed = (await client.get("/v1/tier-runs", headers=admin, params={"status": "failed"})).json()
    assert failed == {"items": [], "next_cursor": None}
    bad = await client.get("/v1/tier-runs", headers=admin, params={"cursor": "nope"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["parameter"] == "cursor"
