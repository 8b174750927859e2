"""Re-tiering in micro-batches (app/customers/retier.py): activity events and the NDJSON import mark their
customers in the intake's transaction; the worker's batches re-tier them set-based, with their transitions and
tier.* webhook events; claims never overlap; erasure removes the marks."""

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime

import httpx
from sqlalchemy import text

from app.apikeys import service as apikeys_service
from app.core.db import create_sessionmaker
from app.customers import retier
from app.main import create_app
from tests.factories import customer_body, delete_customers, inserting_customers

ACTIVITY_POLICY = {
    "name": "Activity",
    "downgrade_grace_days": 0,
    "tiers": [
        {
            "code": "active",
            "label": "Active",
            "rank": 2,
            "condition": {"attr": "txn_count_90d", "op": "gte", "value": 2},
        },
        {"code": "idle", "label": "Idle", "rank": 1, "condition": {"always": True}},
    ],
}


def _events(external_id: str, count: int, prefix: str = "t") -> dict:
    now = datetime.now(UTC).isoformat()
    return {
        "events": [
            {
                "type": "transaction",
                "event_id": f"{prefix}{i}",
                "customer_id": external_id,
                "occurred_at": now,
                "amount": "20.00",
                "direction": "debit",
                "channel": "card",
            }
            for i in range(count)
        ]
    }


async def _activate(client, admin: dict, key: str) -> None:
    created = await client.post("/v1/tier-policies", headers=admin, json={"policy_key": key, **ACTIVITY_POLICY})
    assert created.status_code == 201, created.text
    activated = await client.post(f"/v1/tier-policies/{key}/versions/1/activate", headers=admin)
    assert activated.status_code == 200, activated.text


async def _tier(client, headers: dict, external_id: str, policy: str) -> str:
    response = await client.get(f"/v1/customers/{external_id}/tiers", headers=headers)
    assert response.status_code == 200, response.text
    return next(t for t in response.json()["tiers"] if t["policy_key"] == policy)["tier"]


async def _marks(session, external_id: str) -> list[str]:
    """The customer's marks: a row each, or in a mark set (an import's, until the worker expands it)."""
    rows = await session.scalars(
        text(
            "SELECT m.scope FROM (SELECT customer_id, scope FROM retier_mark UNION ALL "
            "SELECT unnest(customer_ids), scope FROM retier_mark_set) m JOIN customer c ON c.id = m.customer_id "
            "WHERE c.external_id = :x ORDER BY m.scope"
        ),
        {"x": external_id},
    )
    return list(rows)


async def test_events_are_marked_and_the_next_batch_re_tiers_with_transitions_and_webhooks(
    client, as_role, session, sessionmaker
):
    await _activate(client, as_role("admin"), "activity")
    integration = as_role("integration")
    assert (await client.put("/v1/customers/RT1", json=customer_body(), headers=integration)).status_code == 201
    assert await _tier(client, as_role("app"), "RT1", "activity") == "idle"  # profile writes re-tier synchronously
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'RT1'"))

    response = await client.post("/v1/events", json=_events("RT1", 2), headers=integration)
    assert response.status_code == 200, response.text
    # accepted without re-tiering in the request: the customer is marked, the tier has not moved yet
    assert await _marks(session, "RT1") == ["activity"]
    assert await _tier(client, as_role("app"), "RT1", "activity") == "idle"
    assert await session.scalar(text("SELECT count(*) FROM webhook_event WHERE event_type = 'tier.upgraded'")) == 0

    async with sessionmaker() as worker, worker.begin():
        assert await retier.observe_lag(worker) >= 0
        assert await retier.run_batch(worker, 100) == 1

    assert await _marks(session, "RT1") == []
    assert await _tier(client, as_role("app"), "RT1", "activity") == "active"
    moves = (
        await session.execute(
            text(
                "SELECT t.from_code, t.to_code, t.direction FROM tier_transition t JOIN tier_policy p "
                "ON p.id = t.policy_id WHERE p.key = 'activity' AND t.customer_id = :id ORDER BY t.id"
            ),
            {"id": customer_id},
        )
    ).all()
    assert [tuple(m) for m in moves] == [(None, "idle", "initial"), ("idle", "active", "upgrade")]
    payloads = (
        await session.scalars(
            text("SELECT payload FROM webhook_event WHERE event_type = 'tier.upgraded' AND customer_id = :id"),
            {"id": customer_id},
        )
    ).all()
    assert [(p["policy_key"], p["from_tier"], p["to_tier"], p["customer_id"]) for p in payloads] == [
        ("activity", "idle", "active", "RT1")
    ]
    # nothing left: the next batch takes nothing
    async with sessionmaker() as worker, worker.begin():
        assert await retier.run_batch(worker, 100) == 0


async def test_the_ndjson_import_marks_its_customers_for_every_policy(client, as_role, session, sessionmaker):
    await _activate(client, as_role("admin"), "activity")
    lines = "\n".join(json.dumps({"customer_id": f"RTI{i}", **customer_body()}) for i in range(3))
    response = await client.post(
        "/v1/customers/import",
        content=lines,
        headers={**as_role("integration"), "Content-Type": "application/x-ndjson", "Idempotency-Key": "rt-import-1"},
    )
    assert response.status_code == 200, response.text
    assert await _marks(session, "RTI0") == ["any"]
    assigned = text(
        "SELECT count(*) FROM tier_assignment a JOIN customer c ON c.id = a.customer_id WHERE c.external_id LIKE 'RTI%'"
    )
    assert await session.scalar(assigned) == 0
    assert await retier.drain(sessionmaker, 2) == 3  # two batches
    assert await session.scalar(assigned) == 3
    assert await _tier(client, as_role("app"), "RTI1", "activity") == "idle"


async def test_the_ndjson_import_marks_offer_states_of_the_customers_it_updates_only(client, as_role, session):
    integration = as_role("integration")
    assert (await client.put("/v1/customers/RTO1", json=customer_body(), headers=integration)).status_code == 201
    state = text(
        "SELECT c.external_id, s.generation, s.valid_until = '-infinity' AS stale FROM customer c "
        "LEFT JOIN customer_offer_state s ON s.customer_id = c.id WHERE c.external_id LIKE 'RTO%' ORDER BY 1"
    )
    assert (await session.execute(state)).all() == [("RTO1", 1, True)]
    lines = "\n".join(json.dumps({"customer_id": f"RTO{i}", **customer_body()}) for i in (1, 2))
    response = await client.post(
        "/v1/customers/import", content=lines, headers={**integration, "Content-Type": "application/x-ndjson"}
    )
    assert (response.status_code, response.json()["created"], response.json()["updated"]) == (200, 1, 1)
    # the updated customer's generation moves on; the created one has no state (nothing can have read it)
    assert (await session.execute(state)).all() == [("RTO1", 2, True), ("RTO2", None, None)]
    assert await _marks(session, "RTO1") == ["any"]
    assert await _marks(session, "RTO2") == ["any"]


async def test_a_rolled_back_intake_leaves_no_mark(client, as_role, session):
    integration = as_role("integration")
    assert (await client.put("/v1/customers/RT2", json=customer_body(), headers=integration)).status_code == 201
    batch = _events("RT2", 1)
    batch["events"].append({**batch["events"][0], "event_id": "u1", "customer_id": "RT-unknown"})
    response = await client.post("/v1/events", json=batch, headers=integration)
    assert response.status_code == 422, response.text
    assert await _marks(session, "RT2") == []
    assert await session.scalar(text("SELECT count(*) FROM retier_mark")) == 0


async def test_erasure_removes_the_customers_marks(client, as_role, session):
    integration = as_role("integration")
    assert (await client.put("/v1/customers/RT3", json=customer_body(), headers=integration)).status_code == 201
    assert (await client.post("/v1/events", json=_events("RT3", 1), headers=integration)).status_code == 200
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'RT3'"))
    assert await session.scalar(text("SELECT count(*) FROM retier_mark WHERE customer_id = :id"), {"id": customer_id})
    assert (await client.delete("/v1/customers/RT3", headers=as_role("admin"))).status_code == 204
    assert (
        await session.scalar(text("SELECT count(*) FROM retier_mark WHERE customer_id = :id"), {"id": customer_id}) == 0
    )


async def _drop_customers(conn, tag: str) -> None:
    """Clean-up: the tagged customers with their marks and rollups (no foreign key cascades into those)."""
    await delete_customers(conn, "external_id LIKE :tag", {"tag": f"{tag}-%"})


async def _committed_customers(engine, tag: str, count: int) -> list[int]:
    async with engine.begin() as conn:
        ids = list(
            await conn.scalars(
                text(
                    inserting_customers(
                        "INSERT INTO customer (external_id, segment, onboarded_at) "
                        "SELECT :tag || '-' || g, 'retail', now() FROM generate_series(1, :n) g"
                    )
                ),
                {"tag": tag, "n": count},
            )
        )
        await conn.execute(
            text("INSERT INTO retier_mark (customer_id, scope) SELECT unnest(CAST(:ids AS bigint[])), 'activity'"),
            {"ids": ids},
        )
    return sorted(ids)


async def test_two_workers_never_take_the_same_customer(engine):
    """Two batches on separate connections: the second skips what the first has claimed (it does not wait for
    it), and each mark is taken once."""
    tag = f"RTSK-{uuid.uuid4().hex[:8]}"
    ids = await _committed_customers(engine, tag, 6)
    sessionmaker = create_sessionmaker(engine)
    try:
        async with sessionmaker() as first, sessionmaker() as second:
            async with first.begin():
                assert await retier.run_batch(first, 3) == 3
                async with second.begin():
                    # the first batch holds its claims (uncommitted): the second takes the others, without waiting
                    taken = await asyncio.wait_for(retier.run_batch(second, 100), timeout=30)
                    left = set(
                        await second.scalars(
                            text("SELECT customer_id FROM retier_mark WHERE customer_id = ANY(:ids)"), {"ids": ids}
                        )
                    )
                # what the second saw left: the first batch's three (deleted but not committed), none of its own
                assert len(left) == 3 and taken >= 3
            async with engine.connect() as conn:
                assert (
                    await conn.scalar(
                        text("SELECT count(*) FROM retier_mark WHERE customer_id = ANY(:ids)"), {"ids": ids}
                    )
                    == 0
                )
    finally:
        async with engine.begin() as conn:
            await _drop_customers(conn, tag)


async def test_the_lifespan_worker_re_tiers_within_the_interval(engine, database_url, test_settings):
    """The real worker, started by the app's lifespan on its own engine: events posted, the tier moves without
    any call but the worker's, and the lag shows in /metrics."""
    tag = uuid.uuid4().hex[:8]
    policy = f"rtlive_{tag}"
    external_id = f"RTLIVE-{tag}"
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        made = {
            role: await apikeys_service.create_api_key(session, f"rt-{role}-{tag}", role, test_settings.api_key_pepper)
            for role in ("integration", "admin", "app")
        }
        await session.commit()
    headers = {role: {"X-API-Key": key} for role, (_, key) in made.items()}
    settings = test_settings.model_copy(
        update={"database_url": database_url, "retier_interval_seconds": 0.2, "webhook_worker": False}
    )
    app = create_app(settings)
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://tierwise.test", timeout=30) as client:
                await _activate(client, headers["admin"], policy)
                path = f"/v1/customers/{external_id}"
                put = await client.put(path, json=customer_body(), headers=headers["integration"])
                assert put.status_code == 201, put.text
                assert await _tier(client, headers["app"], external_id, policy) == "idle"
                posted = await client.post("/v1/events", json=_events(external_id, 3), headers=headers["integration"])
                assert posted.status_code == 200, posted.text
                deadline = time.monotonic() + 30
                while await _tier(client, headers["app"], external_id, policy) != "active":
                    assert time.monotonic() < deadline, "the worker did not re-tier within 30 s"
                    await asyncio.sleep(0.1)
                metrics = (await client.get("/metrics")).text
                assert "tierwise_retier_lag_seconds" in metrics
                assert "tierwise_retier_pending" in metrics
    finally:
        async with engine.begin() as conn:
            for table in ("tier_assignment", "tier_transition", "webhook_event"):
                await conn.execute(
                    text(f"DELETE FROM {table} WHERE customer_id IN (SELECT id FROM customer WHERE external_id = :x)"),
                    {"x": external_id},
                )
            await delete_customers(conn, "external_id = :x", {"x": external_id})
            await conn.execute(text("DELETE FROM tier_policy WHERE key = :k"), {"k": policy})
            await conn.execute(text("DELETE FROM audit_event WHERE actor LIKE :a"), {"a": f"rt-%-{tag}"})
            await conn.execute(
                text("DELETE FROM api_key WHERE id = ANY(:ids)"), {"ids": [r.id for r, _ in made.values()]}
            )


async def test_an_intake_during_a_batch_waits_for_it_and_marks_its_customer_again(engine, test_settings):
    """A batch holds a customer (claimed, locked, its mark deleted, not committed): an intake of events for that
    customer waits for the batch's lock (seen in pg_locks), and once the batch commits, stores its events and marks
    the customer again, so that the next batch re-tiers what the first could not see."""
    tag = f"RTRACE-{uuid.uuid4().hex[:8]}"
    (customer_id,) = await _committed_customers(engine, tag, 1)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        made, key = await apikeys_service.create_api_key(
            session, f"rt-race-{tag}", "integration", test_settings.api_key_pepper
        )
        await session.commit()
    app = create_app(test_settings, sessionmaker=sessionmaker)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with (
            httpx.AsyncClient(transport=transport, base_url="http://tierwise.test", timeout=60) as client,
            sessionmaker() as batch,
        ):
            await batch.begin()
            assert await retier.run_batch(batch, 100) >= 1
            batch_pid = await batch.scalar(text("SELECT pg_backend_pid()"))
            intake = asyncio.ensure_future(
                client.post("/v1/events", json=_events(f"{tag}-1", 1), headers={"X-API-Key": key})
            )
            async with engine.connect() as watcher:
                deadline = time.monotonic() + 30
                while not await watcher.scalar(
                    text(
                        "SELECT count(*) FROM pg_locks w JOIN pg_locks h ON h.pid = :pid AND h.granted "
                        "AND w.locktype = h.locktype AND w.database IS NOT DISTINCT FROM h.database "
                        "AND w.relation IS NOT DISTINCT FROM h.relation AND w.page IS NOT DISTINCT FROM h.page "
                        "AND w.tuple IS NOT DISTINCT FROM h.tuple "
                        "AND w.transactionid IS NOT DISTINCT FROM h.transactionid WHERE NOT w.granted"
                    ),
                    {"pid": batch_pid},
                ):
                    assert time.monotonic() < deadline and not intake.done(), "the intake did not wait for the batch"
                    await watcher.rollback()
                    await asyncio.sleep(0.05)
            assert not intake.done()
            await batch.commit()
            response = await asyncio.wait_for(intake, timeout=30)
            assert response.status_code == 200, response.text
        async with engine.connect() as conn:
            scopes = list(
                await conn.scalars(text("SELECT scope FROM retier_mark WHERE customer_id = :id"), {"id": customer_id})
            )
        assert scopes == ["activity"]
        async with sessionmaker() as worker, worker.begin():
            assert await retier.run_batch(worker, 100) >= 1
    finally:
        async with engine.begin() as conn:
            await _drop_customers(conn, tag)
            await conn.execute(text("DELETE FROM api_key WHERE id = :id"), {"id": made.id})


async def test_a_batch_skips_a_customer_another_writer_holds_and_leaves_its_mark(engine):
    """A writer holds one of the marked customers (its row locked, uncommitted): a batch does not wait for it; it
    re-tiers the others and deletes their marks, and the held customer's mark stays for the batch after the writer
    commits."""
    tag = f"RTHELD-{uuid.uuid4().hex[:8]}"
    ids = await _committed_customers(engine, tag, 4)
    held = ids[1]
    sessionmaker = create_sessionmaker(engine)
    try:
        async with engine.connect() as writer:
            await writer.begin()
            await writer.execute(text("SELECT id FROM customer WHERE id = :id FOR NO KEY UPDATE"), {"id": held})
            async with sessionmaker() as batch, batch.begin():
                await asyncio.wait_for(retier.run_batch(batch, 100), timeout=30)
            async with engine.connect() as conn:
                left = list(
                    await conn.scalars(
                        text("SELECT customer_id FROM retier_mark WHERE customer_id = ANY(:ids)"), {"ids": ids}
                    )
                )
            assert left == [held]
            await writer.commit()
        async with sessionmaker() as batch, batch.begin():
            assert await retier.run_batch(batch, 100) >= 1
        async with engine.connect() as conn:
            assert not await conn.scalar(
                text("SELECT count(*) FROM retier_mark WHERE customer_id = ANY(:ids)"), {"ids": ids}
            )
    finally:
        async with engine.begin() as conn:
            await _drop_customers(conn, tag)


async def test_the_worker_analyzes_a_table_an_intake_has_grown_past_its_statistics(engine):
    """Many marks written since retier_mark was last analyzed: refresh_statistics analyzes it (the planner then
    knows its size), and a second call finds nothing stale there."""
    tag = f"RTSTAT-{uuid.uuid4().hex[:8]}"
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session, session.begin():
        await retier.refresh_statistics(session)  # whatever other tests left stale
    try:
        async with engine.begin() as conn:
            planned = await conn.scalar(
                text("SELECT greatest(reltuples, 0) FROM pg_class WHERE relname = 'retier_mark'")
            )
        await _committed_customers(engine, tag, int(max(1000, planned)) + 200)
        stale: list[str] = []
        deadline = time.monotonic() + 30
        while "retier_mark" not in stale:  # the server reports the writes' counts within about a second
            assert time.monotonic() < deadline, "retier_mark was not found stale"
            async with sessionmaker() as session, session.begin():
                await session.execute(text("SELECT pg_stat_clear_snapshot()"))
                stale = await retier.refresh_statistics(session)
            await asyncio.sleep(0.2)
        async with engine.connect() as conn:
            rows = await conn.scalar(text("SELECT reltuples FROM pg_class WHERE relname = 'retier_mark'"))
        assert rows >= 1000
        async with sessionmaker() as session, session.begin():
            await session.execute(text("SELECT pg_stat_clear_snapshot()"))
            assert "retier_mark" not in await retier.refresh_statistics(session)
    finally:
        async with engine.begin() as conn:
            await _drop_customers(conn, tag)


async def test_an_import_marks_exactly_its_customers_as_one_set_which_the_worker_expands(
    client, as_role, session, sessionmaker
):
    """The import's statement writes one mark set (its customers' ids), no row a customer; the worker re-tiers
    exactly those customers: not one the import did not write."""
    await _activate(client, as_role("admin"), "activity")
    integration = as_role("integration")
    assert (await client.put("/v1/customers/RTS1", json=customer_body(), headers=integration)).status_code == 201
    unmarked = "INSERT INTO customer (external_id, segment, onboarded_at) VALUES ('RTSX', 'retail', now())"
    await session.execute(text(inserting_customers(unmarked)))  # no mark
    lines = "\n".join(json.dumps({"customer_id": f"RTS{i}", **customer_body()}) for i in (1, 2, 3))
    response = await client.post(
        "/v1/customers/import", content=lines, headers={**integration, "Content-Type": "application/x-ndjson"}
    )
    assert (response.status_code, response.json()["created"], response.json()["updated"]) == (200, 2, 1)
    tagged = text("SELECT external_id, id FROM customer WHERE external_id LIKE 'RTS%'")
    ids = dict((await session.execute(tagged)).all())
    imported = sorted(ids[f"RTS{i}"] for i in (1, 2, 3))
    sets = (await session.execute(text("SELECT customer_ids, scope FROM retier_mark_set"))).all()
    assert [tuple(row) for row in sets] == [(imported, "any")]
    marked = text("SELECT count(*) FROM retier_mark WHERE customer_id = ANY(:ids)")
    assert await session.scalar(marked, {"ids": list(ids.values())}) == 0
    assert (await session.execute(retier._LAG)).one()[1] >= 3  # the lag and the pending count see the set
    assigned = text(
        "SELECT c.external_id FROM tier_assignment a JOIN customer c ON c.id = a.customer_id "
        "JOIN tier_policy p ON p.id = a.policy_id AND p.key = 'activity' WHERE c.external_id LIKE 'RTS%' ORDER BY 1"
    )
    assert list(await session.scalars(assigned)) == ["RTS1"]  # the PUT's own, synchronous
    await session.execute(text("DELETE FROM tier_assignment WHERE customer_id = :id"), {"id": ids["RTS1"]})
    assert await retier.drain(sessionmaker, 100) >= 3
    assert list(await session.scalars(assigned)) == ["RTS1", "RTS2", "RTS3"]  # not RTSX, which no one marked
    assert await session.scalar(text("SELECT count(*) FROM retier_mark_set")) == 0
    assert await session.scalar(marked, {"ids": list(ids.values())}) == 0


async def test_a_mark_set_is_lost_by_no_crash_and_expanded_by_one_worker(engine):
    """A worker that dies before its expansion commits leaves the set; one that dies after it leaves the marks, a
    row each with the set's time; a second worker skips a set being expanded, without waiting for it."""
    from app.customers.customer_import import import_lines

    tag = f"RTX-{uuid.uuid4().hex[:8]}"
    sessionmaker = create_sessionmaker(engine)
    lines = [(n + 1, json.dumps({"customer_id": f"{tag}-{n}", **customer_body()}).encode()) for n in range(4)]
    try:
        async with sessionmaker() as session, session.begin():
            assert (await import_lines(session, lines))[:3] == (4, 4, 0)
        async with engine.connect() as conn:
            tagged = text("SELECT id FROM customer WHERE external_id LIKE :t")
            ids = sorted(await conn.scalars(tagged, {"t": f"{tag}-%"}))
            the_set = text("SELECT customer_ids, marked_at FROM retier_mark_set WHERE customer_ids && :ids")
            (set_ids, set_time), *others = (await conn.execute(the_set, {"ids": ids})).all()
        assert (set_ids, others) == (ids, [])
        marks = text("SELECT customer_id, scope, marked_at FROM retier_mark WHERE customer_id = ANY(:ids) ORDER BY 1")
        async with sessionmaker() as first, sessionmaker() as second:
            await first.begin()
            assert await retier.expand_sets(first) >= 1
            async with second.begin():
                assert await asyncio.wait_for(retier.expand_sets(second), timeout=30) == 0
            await first.rollback()  # the worker died before its commit
        async with engine.connect() as conn:
            assert len((await conn.execute(the_set, {"ids": ids})).all()) == 1
            assert (await conn.execute(marks, {"ids": ids})).all() == []
        async with sessionmaker() as worker, worker.begin():
            assert await retier.expand_sets(worker) >= 1
        # the worker died after its commit, before any batch: the marks wait for the next one
        async with engine.connect() as conn:
            assert (await conn.execute(the_set, {"ids": ids})).all() == []
            assert [tuple(row) for row in (await conn.execute(marks, {"ids": ids})).all()] == [
                (i, "any", set_time) for i in ids
            ]
    finally:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM retier_mark_set WHERE customer_ids && :ids"), {"ids": ids})
            await _drop_customers(conn, tag)


async def test_erasure_removes_the_customer_from_the_imports_mark_sets(client, as_role, session):
    integration = as_role("integration")
    lines = "\n".join(json.dumps({"customer_id": f"RTE{i}", **customer_body()}) for i in (1, 2))
    response = await client.post(
        "/v1/customers/import", content=lines, headers={**integration, "Content-Type": "application/x-ndjson"}
    )
    assert response.status_code == 200, response.text
    tagged = text("SELECT external_id, id FROM customer WHERE external_id LIKE 'RTE%'")
    ids = dict((await session.execute(tagged)).all())
    assert await _marks(session, "RTE1") == ["any"]
    assert (await client.delete("/v1/customers/RTE1", headers=as_role("admin"))).status_code == 204
    sets = list(await session.scalars(text("SELECT customer_ids FROM retier_mark_set")))
    assert sets == [[ids["RTE2"]]]


async def test_a_mark_set_is_stored_uncompressed(session):
    """A chunk's set (5,000 ids, 40 kB) is stored out of line as it is (migration d4c0ffee0060): compressing it cost
    the import's statement more than the set's whole insert (bench/RESULTS.md, import22)."""
    written = f"""WITH merged AS (SELECT generate_series(900000001, 900005000)::bigint AS id),
    marked AS ({retier.mark_set_written_sql("merged")} RETURNING id) SELECT id FROM marked"""
    set_id = await session.scalar(text(written))
    stored = text(
        "SELECT cardinality(customer_ids), pg_column_compression(customer_ids) FROM retier_mark_set WHERE id = :id"
    )
    assert tuple((await session.execute(stored, {"id": set_id})).one()) == (5000, None)
