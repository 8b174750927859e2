"""Relationship managers through HTTP: created (Idempotency-Key), read with an ETag, changed with If-Match,
listed in pages, validated with a pointer to the bad field, audited."""

from sqlalchemy import text

from tests.managers.helpers import add_manager, manager_body


async def test_a_manager_is_created_once_read_changed_and_audited(client, as_role, wealth, session):
    admin = as_role("admin")
    body = manager_body("RM1", "private", "wealth", capacity=5)
    first = await client.post("/v1/relationship-managers", headers={**admin, "Idempotency-Key": "m-1"}, json=body)
    assert first.status_code == 201, first.text
    assert first.headers["location"] == "/v1/relationship-managers/RM1"
    assert first.json()["serves"] == {"policy_key": "wealth", "tiers": ["private", "wealth"]}
    again = await client.post("/v1/relationship-managers", headers={**admin, "Idempotency-Key": "m-1"}, json=body)
    assert again.headers["idempotent-replayed"] == "true" and again.json() == first.json()
    taken = await client.post("/v1/relationship-managers", headers=admin, json=body)
    assert taken.status_code == 409

    read = await client.get("/v1/relationship-managers/RM1", headers=admin)
    etag = read.headers["etag"]
    assert (
        await client.get("/v1/relationship-managers/RM1", headers={**admin, "If-None-Match": etag})
    ).status_code == 304
    changed = await client.patch(
        "/v1/relationship-managers/RM1", headers={**admin, "If-Match": etag}, json={"capacity": 8, "team": "private"}
    )
    assert changed.status_code == 200 and changed.json()["capacity"] == 8 and changed.json()["team"] == "private"
    stale = await client.patch(
        "/v1/relationship-managers/RM1", headers={**admin, "If-Match": etag}, json={"capacity": 9}
    )
    assert stale.status_code == 412
    assert (await client.get("/v1/relationship-managers/RM1", headers=admin)).json()["capacity"] == 8

    actions = (
        await session.execute(
            text("SELECT action, actor FROM audit_event WHERE entity_type = 'relationship_manager' ORDER BY id")
        )
    ).all()
    assert actions == [("manager.create", "test-admin"), ("manager.update", "test-admin")]
    assert (await client.get("/v1/relationship-managers/none", headers=admin)).status_code == 404


async def test_bad_managers_are_refused_naming_the_field(client, as_role, wealth):
    admin = as_role("admin")
    cases = [
        (manager_body("RM2", "diamond"), "/serves/tiers/0"),
        (manager_body("RM2", serves={"policy_key": "nosuch", "tiers": ["gold"]}), "/serves/policy_key"),
        (manager_body("RM2", capacity=-1), "/capacity"),
        (manager_body("RM2", capacity="10"), "/capacity"),
        (manager_body("RM 2"), "/manager_id"),
    ]
    for body, pointer in cases:
        response = await client.post("/v1/relationship-managers", headers=admin, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["errors"][0]["pointer"] == pointer, response.json()
    await add_manager(client, as_role, "RM3")
    nulled = await client.patch("/v1/relationship-managers/RM3", headers=admin, json={"capacity": None})
    assert nulled.status_code == 422 and nulled.json()["errors"][0]["pointer"] == "/capacity"


async def test_managers_are_listed_in_pages_and_filtered(client, as_role, wealth):
    for i in range(5):
        await add_manager(client, as_role, f"RM{i}", team="east" if i % 2 else "west")
    admin = as_role("admin")
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/relationship-managers", headers=admin, params=params)).json()
        seen += [m["manager_id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"RM{i}" for i in range(5)]
    east = (await client.get("/v1/relationship-managers", headers=admin, params={"team": "east"})).json()
    assert [m["manager_id"] for m in east["items"]] == ["RM1", "RM3"]
