"""The contact log through HTTP: recorded once per Idempotency-Key, by the customer's manager unless another is
named, listed per customer and per manager in pages; notes erased with the customer, with their manager and the
reasons of reassignments."""

from sqlalchemy import text

from tests.managers.helpers import add_manager, make_customer, manager_of, run


async def contact(client, as_role, customer: str, key: str | None = None, **body):
    body = {"kind": "call", "channel": "phone", "outcome": "reached", **body}
    headers = {**as_role("admin"), **({"Idempotency-Key": key} if key else {})}
    return await client.post(f"/v1/customers/{customer}/contacts", headers=headers, json=body)


async def test_contacts_are_recorded_once_and_listed_per_customer_and_manager(client, as_role, wealth, session):
    await add_manager(client, as_role, "A", capacity=5)
    await add_manager(client, as_role, "B", capacity=5, team="other")
    await make_customer(client, as_role, "K1", "620000.00")
    await make_customer(client, as_role, "K2", "60000.00")
    await run(client, as_role)
    owner = await manager_of(client, as_role, "K1")

    first = await contact(client, as_role, "K1", key="c-1", note="Asked about the new fund.")
    assert first.status_code == 201, first.text
    assert first.headers["location"] == f"/v1/customers/K1/contacts/{first.json()['id']}"
    assert first.json()["manager_id"] == owner and first.json()["recorded_by"] == "test-admin"
    again = await contact(client, as_role, "K1", key="c-1", note="Asked about the new fund.")
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
    other = await contact(
        client,
        as_role,
        "K1",
        kind="visit",
        channel="branch",
        outcome="follow_up",
        manager_id="B",
        contacted_at="2026-01-05T10:00:00Z",
    )
    assert other.status_code == 201 and other.json()["manager_id"] == "B"
    for _ in range(2):
        assert (
            await contact(client, as_role, "K2", kind="message", channel="wechat", manager_id="B")
        ).status_code == 201
    nobody = await contact(client, as_role, "K2", outcome="no_answer")
    assert nobody.status_code == 201 and nobody.json()["manager_id"] is None  # K2 (gold) has no manager

    assert await session.scalar(text("SELECT count(*) FROM manager_contact")) == 5
    listed = (await client.get("/v1/customers/K1/contacts", headers=as_role("admin"))).json()
    assert [c["id"] for c in listed["items"]] == [other.json()["id"], first.json()["id"]]
    one = await client.get(f"/v1/customers/K1/contacts/{first.json()['id']}", headers=as_role("admin"))
    assert one.status_code == 200 and one.json()["note"] == "Asked about the new fund."
    assert (
        await client.get(f"/v1/customers/K2/contacts/{first.json()['id']}", headers=as_role("admin"))
    ).status_code == 404

    pages, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (
            await client.get("/v1/relationship-managers/B/contacts", headers=as_role("admin"), params=params)
        ).json()
        pages.append([(c["customer_id"], c["kind"]) for c in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == [[("K2", "message"), ("K2", "message")], [("K1", "visit")]]


async def test_bad_contacts_are_refused_naming_the_field(client, as_role, wealth):
    await make_customer(client, as_role, "K3", "620000.00")
    for body, pointer in [
        ({"kind": "fax"}, "/kind"),
        ({"channel": "pigeon"}, "/channel"),
        ({"manager_id": "nobody"}, "/manager_id"),
        ({"contacted_at": "2099-01-01T00:00:00Z"}, "/contacted_at"),
        ({"contacted_at": "2026-01-01"}, "/contacted_at"),
        ({"note": "x" * 4001}, "/note"),
    ]:
        response = await contact(client, as_role, "K3", **body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["pointer"] == pointer, (body, response.json())
    assert (await contact(client, as_role, "nobody")).status_code == 404


async def test_erasure_takes_the_notes_the_manager_and_the_reasons(client, as_role, wealth, session):
    await add_manager(client, as_role, "A", capacity=5)
    await add_manager(client, as_role, "B", capacity=5)
    await make_customer(client, as_role, "E1", "620000.00")
    await make_customer(client, as_role, "E2", "620000.00")
    await run(client, as_role)
    moved = await client.put(
        "/v1/customers/E1/relationship-manager",
        headers=as_role("admin"),
        json={
            "manager_id": "B" if await manager_of(client, as_role, "E1") == "A" else "A",
            "reason": "Moved to Shanghai.",
        },
    )
    assert moved.status_code == 200
    assert (await contact(client, as_role, "E1", note="Mentioned her divorce.")).status_code == 201
    assert (await contact(client, as_role, "E2", note="Kept note.")).status_code == 201

    erased = await client.delete("/v1/customers/E1", headers=as_role("admin"))
    assert erased.status_code == 204, erased.text
    e1 = "(SELECT id FROM customer WHERE id NOT IN (SELECT customer_id FROM manager_assignment))"
    assert await session.scalar(text("SELECT count(*) FROM manager_assignment")) == 1
    notes = (await session.execute(text("SELECT note FROM manager_contact ORDER BY id"))).scalars().all()
    assert notes == [None, "Kept note."]
    reasons = (
        (await session.execute(text(f"SELECT reason FROM manager_assignment_change WHERE customer_id IN {e1}")))
        .scalars()
        .all()
    )
    assert reasons and all(reason is None for reason in reasons)
    # Kept, anonymous: the contact itself counts for the manager.
    assert await session.scalar(text(f"SELECT count(*) FROM manager_contact WHERE customer_id IN {e1}")) == 1
    again = await run(client, as_role)
    assert (again["assigned"], again["kept"]) == (0, 1)
