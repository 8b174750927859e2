"""Complaints through HTTP: open once, a lifecycle with history (actor, note, time), 409 on invalid moves, lists
with filters and cursor pagination, and open complaints / days to resolve as customer attributes."""

import logging
from datetime import UTC, datetime, timedelta

from tests.feedback.helpers import make_customer
from tests.feedback.test_surveys import features


def complaint(event_id: str, customer: str, category: str = "fees", days_ago: float | None = None, **extra) -> dict:
    body = {
        "event_id": event_id,
        "customer_id": customer,
        "category": category,
        "channel": "phone",
        "description": f"Complaint {event_id}",
        **extra,
    }
    if days_ago is not None:
        body["opened_at"] = (datetime.now(UTC) - timedelta(days=days_ago)).isoformat()
    return body


async def move(client, as_role, complaint_id: int, to: str, note: str | None = None, role: str = "admin"):
    return await client.post(
        f"/v1/feedback/complaints/{complaint_id}/transitions",
        headers=as_role(role),
        json={"to_status": to, "note": note},
    )


async def test_complaint_lifecycle_with_history_and_409_on_invalid_moves(client, as_role, session, caplog):
    await make_customer(client, as_role, "K1")
    secret = "Card skimmed at ATM on Main St; PIN 4321"
    with caplog.at_level(logging.DEBUG):
        opened = await client.post(
            "/v1/feedback/complaints",
            headers=as_role("app"),
            json=complaint("k-1", "K1", "fraud", days_ago=3, description=secret),
        )
    assert opened.status_code == 201, opened.text
    assert secret not in caplog.text
    body = opened.json()
    cid = body["id"]
    assert (body["status"], body["description"], body["customer_id"]) == ("open", secret, "K1")
    retried = await client.post(
        "/v1/feedback/complaints", headers=as_role("app"), json=complaint("k-1", "K1", "fraud", description=secret)
    )
    assert retried.status_code == 200 and retried.json()["id"] == cid
    assert (await features(session, "K1"))["open_complaints"] == 1

    invalid = await move(client, as_role, cid, "closed")
    assert invalid.status_code == 409 and invalid.json()["allowed"] == ["in_progress", "resolved"]
    assert (await move(client, as_role, cid, "in_progress", "assigned to fraud team")).status_code == 200
    assert (await move(client, as_role, cid, "resolved", role="app")).status_code == 403  # the app opens, never moves
    resolved = await move(client, as_role, cid, "resolved", "card reissued, money returned", role="admin")
    assert resolved.status_code == 200 and resolved.json()["resolved_at"] is not None
    got = await features(session, "K1")
    assert got["open_complaints"] == 0 and 2.99 < float(got["days_to_resolve_avg"]) < 3.01
    assert (await move(client, as_role, cid, "in_progress")).status_code == 409
    assert (await move(client, as_role, cid, "closed")).status_code == 200
    assert (await move(client, as_role, cid, "resolved")).status_code == 409
    reopened = await move(client, as_role, cid, "open", "charged again")
    assert reopened.status_code == 200 and reopened.json()["resolved_at"] is None
    got = await features(session, "K1")
    assert got["open_complaints"] == 1 and got["days_to_resolve_avg"] is None  # the resolution is taken back

    assert (await client.get(f"/v1/feedback/complaints/{cid}", headers=as_role("app"))).status_code == 403
    detail = (await client.get(f"/v1/feedback/complaints/{cid}", headers=as_role("admin"))).json()
    history = [(h["from_status"], h["to_status"], h["actor"], h["note"]) for h in detail["history"]]
    assert history == [
        (None, "open", "test-app", None),
        ("open", "in_progress", "test-admin", "assigned to fraud team"),
        ("in_progress", "resolved", "test-admin", "card reissued, money returned"),
        ("resolved", "closed", "test-admin", None),
        ("closed", "open", "test-admin", "charged again"),
    ]
    times = [h["at"] for h in detail["history"]]
    assert times == sorted(times)
    assert (await client.get("/v1/feedback/complaints/999999999", headers=as_role("admin"))).status_code == 404
    assert (await move(client, as_role, 999999999, "resolved")).status_code == 404
    bad = await client.post("/v1/feedback/complaints", headers=as_role("app"), json=complaint("k-2", "K1", "weather"))
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/category"


async def test_complaints_list_with_filters_and_cursor(client, as_role):
    await make_customer(client, as_role, "K2")
    await make_customer(client, as_role, "K3")
    ids = []
    for event_id, customer, category, days_ago in (
        ("a", "K2", "fees", 10),
        ("b", "K2", "app", 5),
        ("c", "K3", "fees", 2),
        ("d", "K3", "service", 1),
    ):
        response = await client.post(
            "/v1/feedback/complaints",
            headers=as_role("app"),
            json=complaint(event_id, customer, category, days_ago=days_ago),
        )
        ids.append(response.json()["id"])
    await move(client, as_role, ids[2], "in_progress")

    async def listed(**params) -> list[str]:
        response = await client.get("/v1/feedback/complaints", params=params, headers=as_role("admin"))
        assert response.status_code == 200, response.text
        return [c["event_id"] for c in response.json()["items"]]

    assert await listed(customer_id="K2") == ["a", "b"]
    assert await listed(category="fees") == ["a", "c"]
    assert await listed(status="in_progress") == ["c"]
    since = (datetime.now(UTC) - timedelta(days=6)).isoformat()
    until = (datetime.now(UTC) - timedelta(days=1, hours=12)).isoformat()
    assert await listed(opened_from=since, opened_to=until) == ["b", "c"]
    first = (await client.get("/v1/feedback/complaints", params={"limit": 3}, headers=as_role("admin"))).json()
    assert [c["event_id"] for c in first["items"]][-3:] == ["a", "b", "c"] and first["next_cursor"]
    rest = await listed(limit=3, cursor=first["next_cursor"])
    assert rest == ["d"]
    assert (
        await client.get("/v1/feedback/complaints", params={"status": "lost"}, headers=as_role("admin"))
    ).status_code == 422
