"""Assignment of customers to managers through HTTP, on real tiers: within capacity, filled evenly by capacity,
stable across runs, released only once the downgrade grace is over, manual reassignment kept with its history and
kept by runs, the coverage report."""

from sqlalchemy import text

from tests.factories import WEALTH_GRACE_DAYS
from tests.managers.helpers import add_manager, make_customer, manager_of, run, set_balance


async def loads(session) -> dict[str, int]:
    rows = await session.execute(
        text(
            "SELECT m.manager_id, count(a.customer_id) FROM relationship_manager m "
            "LEFT JOIN manager_assignment a ON a.manager_id = m.id GROUP BY m.manager_id"
        )
    )
    return dict(rows.all())


async def assignments(session) -> dict[int, int]:
    return dict((await session.execute(text("SELECT customer_id, manager_id FROM manager_assignment"))).all())


async def test_customers_are_assigned_within_capacity_evenly_and_kept_across_runs(client, as_role, wealth, session):
    await add_manager(client, as_role, "A", capacity=3)
    await add_manager(client, as_role, "B", capacity=6)
    for i in range(6):
        await make_customer(client, as_role, f"W{i}", "620000.00")
    for i in range(3):
        await make_customer(client, as_role, f"G{i}", "60000.00")  # gold: nobody serves it

    first = await run(client, as_role)
    assert (first["assigned"], first["released"], first["kept"], first["unassigned"]) == (6, 0, 0, 0)
    assert await loads(session) == {"A": 2, "B": 4}  # the same share of each one's capacity
    assert await manager_of(client, as_role, "G0") is None
    mine = (await client.get("/v1/customers/W0/relationship-manager", headers=as_role("admin"))).json()
    assert (mine["policy_key"], mine["tier"], mine["source"]) == ("wealth", "wealth", "run")
    before = await assignments(session)

    for i in range(6, 12):
        await make_customer(client, as_role, f"W{i}", "620000.00")
    second = await run(client, as_role)
    assert (second["assigned"], second["kept"], second["unassigned"]) == (3, 6, 3)
    assert await loads(session) == {"A": 3, "B": 6}  # full, never beyond
    after = await assignments(session)
    assert {c: after[c] for c in before} == before  # nobody assigned before moved

    await add_manager(client, as_role, "C", capacity=10)
    third = await run(client, as_role)
    assert (third["assigned"], third["kept"], third["unassigned"]) == (3, 9, 0)
    assert await loads(session) == {"A": 3, "B": 6, "C": 3}
    assert {c: m for c, m in (await assignments(session)).items() if c in after} == after

    again = await run(client, as_role)
    assert (again["assigned"], again["released"], again["kept"]) == (0, 0, 12)
    got = await client.get(f"/v1/manager-assignment-runs/{again['id']}", headers=as_role("admin"))
    assert got.status_code == 200 and got.json() == again

    report = (await client.get("/v1/reports/manager-coverage", headers=as_role("admin"))).json()
    tiers = {(t["policy_key"], t["tier"]): t for t in report["tiers"]}
    assert tiers[("wealth", "wealth")] == {
        "policy_key": "wealth",
        "tier": "wealth",
        "customers": 12,
        "with_manager": 12,
        "share": 1.0,
    }
    assert tiers[("wealth", "private")]["customers"] == 0 and tiers[("wealth", "private")]["share"] == 0.0
    assert [(m["manager_id"], m["load"], m["utilisation"]) for m in report["managers"]] == [
        ("A", 3, 1.0),
        ("B", 6, 1.0),
        ("C", 3, 0.3),
    ]


async def test_higher_tiers_take_free_slots_first_and_capacity_cannot_drop_below_load(client, as_role, wealth, session):
    await add_manager(client, as_role, "P", "private", "wealth", capacity=2)
    for i in range(3):
        await make_customer(client, as_role, f"W{i}", "620000.00")
    await make_customer(client, as_role, "P0", "12000000.00")
    result = await run(client, as_role)
    assert (result["assigned"], result["unassigned"]) == (2, 2)
    assert await manager_of(client, as_role, "P0") == "P"  # private before wealth
    lowered = await client.patch("/v1/relationship-managers/P", headers=as_role("admin"), json={"capacity": 1})
    assert lowered.status_code == 409 and lowered.json()["code"] == "capacity_below_load"


async def test_a_customer_is_released_only_after_the_downgrade_grace(client, as_role, wealth, session):
    await add_manager(client, as_role, "A", capacity=5)
    await make_customer(client, as_role, "D1", "620000.00")
    await make_customer(client, as_role, "D2", "620000.00")
    await run(client, as_role)
    assert await manager_of(client, as_role, "D1") == "A"

    await set_balance(client, as_role, "D1", "1000.00")  # qualifies for mass now, keeps wealth during grace
    during = await run(client, as_role)
    assert (during["released"], during["kept"]) == (0, 2)
    assert await manager_of(client, as_role, "D1") == "A"

    await session.execute(
        text(
            "UPDATE tier_assignment SET lower_since = lower_since - make_interval(days => :d) "
            "WHERE lower_since IS NOT NULL"
        ),
        {"d": WEALTH_GRACE_DAYS + 1},
    )
    await session.commit()
    evaluated = await client.post("/v1/customers/D1/tiers/evaluate", headers=as_role("integration"))
    assert evaluated.status_code == 200, evaluated.text
    after = await run(client, as_role)
    assert (after["released"], after["kept"], after["assigned"]) == (1, 1, 0)
    assert await manager_of(client, as_role, "D1") is None and await manager_of(client, as_role, "D2") == "A"
    history = (await client.get("/v1/customers/D1/relationship-manager/history", headers=as_role("admin"))).json()[
        "items"
    ]
    assert [(h["action"], h["manager_id"], h["previous_manager_id"], h["run_id"]) for h in history] == [
        ("released", None, "A", after["id"]),
        ("assigned", "A", None, history[1]["run_id"]),
    ]


async def test_manual_reassignment_is_kept_by_runs_with_its_history(client, as_role, wealth, session):
    await add_manager(client, as_role, "A", capacity=5)
    await add_manager(client, as_role, "B", capacity=1)
    await add_manager(client, as_role, "G", "gold", capacity=5)
    for customer in ("M1", "M2"):
        await make_customer(client, as_role, customer, "620000.00")
    await run(client, as_role)
    assert await loads(session) == {"A": 2, "B": 0, "G": 0}  # A at 2/5 is still below B's first slot, 1/1

    not_served = await client.put(
        "/v1/customers/M1/relationship-manager", headers=as_role("admin"), json={"manager_id": "G", "reason": "x"}
    )
    assert not_served.status_code == 409 and not_served.json()["code"] == "not_served"
    bad = await client.put("/v1/customers/M1/relationship-manager", headers=as_role("admin"), json={"manager_id": "B"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["pointer"] == "/reason"
    moved = await client.put(
        "/v1/customers/M1/relationship-manager",
        headers=as_role("admin"),
        json={"manager_id": "B", "reason": "Prefers the branch downtown."},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["manager"]["manager_id"] == "B" and moved.json()["source"] == "manual"
    full = await client.put(
        "/v1/customers/M2/relationship-manager", headers=as_role("admin"), json={"manager_id": "B", "reason": "y"}
    )
    assert full.status_code == 409 and full.json()["code"] == "manager_full"
    on_a = "M1"

    kept = await run(client, as_role)
    assert (kept["released"], kept["assigned"], kept["kept"]) == (0, 0, 2)
    assert await manager_of(client, as_role, on_a) == "B"
    history = (await client.get(f"/v1/customers/{on_a}/relationship-manager/history", headers=as_role("admin"))).json()[
        "items"
    ]
    assert [(h["action"], h["manager_id"], h["previous_manager_id"], h["reason"]) for h in history] == [
        ("reassigned", "B", "A", "Prefers the branch downtown."),
        ("assigned", "A", None, None),
    ]
    audit = (
        await session.execute(text("SELECT actor, before, after FROM audit_event WHERE action = 'manager.reassign'"))
    ).one()
    assert audit.actor == "test-admin"
    assert audit.before["manager"]["manager_id"] == "A" and audit.after["manager"]["manager_id"] == "B"
    assert "Prefers" not in str(audit.before) + str(audit.after)

    # The manager stops serving: at the next run their customers go back to the pool and to A.
    await client.patch("/v1/relationship-managers/B", headers=as_role("admin"), json={"is_active": False})
    moved_back = await run(client, as_role)
    assert (moved_back["released"], moved_back["assigned"]) == (1, 1)
    assert await loads(session) == {"A": 2, "B": 0, "G": 0}
