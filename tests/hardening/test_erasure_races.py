"""Erasure racing other writers of the same customer, and two creations of one external id racing each other, run
truly in parallel: separate connections from the suite's engine, each request its own committed transaction. Each
side is held where the race is decided, and the test waits for it there on pg_stat_activity (never on a delay).
Each test removes the rows it made, by their ids."""

import asyncio
import json
import random
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import text

from app.apikeys import service as apikeys_service
from app.core.db import create_sessionmaker
from app.customers import customer_import
from app.customers.service import erasure_token
from app.main import create_app
from tests.factories import customer_body, delete_customers, external_id_map_errors, serve_list

RACE_PRODUCT = "erase-race-product"


@pytest.fixture
async def committed(engine, test_settings):
    """An app whose every request commits for real, its keys, and a list to note customer ids to drop."""
    sessionmaker = create_sessionmaker(engine)
    tag = uuid.uuid4().hex[:8]
    async with sessionmaker() as session:
        made = {
            role: await apikeys_service.create_api_key(
                session, f"erase-race-{role}-{tag}", role, test_settings.api_key_pepper
            )
            for role in ("integration", "admin")
        }
        await session.commit()
    state = {
        "app": create_app(test_settings, sessionmaker=sessionmaker),
        "sessionmaker": sessionmaker,
        "tag": tag,
        "headers": {role: {"X-API-Key": key} for role, (_, key) in made.items()},
        "customer_ids": [],
        "tokens": [],
    }
    yield state
    async with engine.begin() as conn:
        await delete_customers(conn, "id = ANY(:ids)", {"ids": state["customer_ids"]})
        for table in ("recommendation_list",):
            await conn.execute(
                text(f"DELETE FROM {table} WHERE customer_id = ANY(:ids)"), {"ids": state["customer_ids"]}
            )
        await conn.execute(text("DELETE FROM propensity_stat WHERE product_code = :p"), {"p": RACE_PRODUCT})
        await conn.execute(text("DELETE FROM customer_erasure WHERE token = ANY(:t)"), {"t": state["tokens"]})
        await conn.execute(text("DELETE FROM audit_event WHERE actor LIKE :actor"), {"actor": f"erase-race-%-{tag}"})
        await conn.execute(text("DELETE FROM api_key WHERE id = ANY(:ids)"), {"ids": [r.id for r, _ in made.values()]})


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, raise_app_exceptions=False), base_url="http://tierwise.test", timeout=60
    )


async def _backends_waiting_on_a_lock(sessionmaker, at_least: int, *, besides: int, pending) -> None:
    """Until at least `at_least` backends of this database (other than `besides`) wait on a lock, as
    pg_stat_activity shows; fails if a pending request finishes first."""
    async with sessionmaker() as observer:
        for _ in range(3000):
            for task in pending:
                assert not task.done(), f"a request finished instead of waiting: {task.result()}"
            waiting = await observer.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock' AND pid <> :besides"
                ),
                {"besides": besides},
            )
            await observer.rollback()
            if waiting >= at_least:
                return
            await asyncio.sleep(0.01)
    raise AssertionError(f"fewer than {at_least} backends came to wait on a lock")


async def _customer(committed, test_settings, external_id: str) -> int:
    """A committed customer (noted for cleanup, with its erasure token); its internal id."""
    committed["tokens"].append(erasure_token(external_id, test_settings.api_key_pepper))
    async with _client(committed["app"]) as client:
        profile = customer_body(display_name="Race Erasure")
        put = await client.put(
            f"/v1/customers/{external_id}", json=profile, headers=committed["headers"]["integration"]
        )
        assert put.status_code == 201, put.text
    async with committed["sessionmaker"]() as probe:
        customer_id = await probe.scalar(text("SELECT id FROM customer WHERE external_id = :e"), {"e": external_id})
    committed["customer_ids"].append(customer_id)
    return customer_id


async def _write_while_erasing(committed, test_settings, external_id: str, write) -> tuple:
    """The erasure is held after it has erased the row and before it commits (its last write, the erased id's
    token, waits on a row the test inserted and holds); `write(client)` then starts, reads the customer while the
    erasure is uncommitted, and comes to wait on a lock; then the erasure is let go. (erasure, write) responses."""
    app, sessionmaker, headers = committed["app"], committed["sessionmaker"], committed["headers"]
    token = erasure_token(external_id, test_settings.api_key_pepper)
    async with sessionmaker() as holder, _client(app) as eraser, _client(app) as writer:
        holder_pid = await holder.scalar(text("SELECT pg_backend_pid()"))
        await holder.execute(text("INSERT INTO customer_erasure (token) VALUES (:t)"), {"t": token})
        erasure = asyncio.ensure_future(eraser.delete(f"/v1/customers/{external_id}", headers=headers["admin"]))
        await _backends_waiting_on_a_lock(sessionmaker, 1, besides=holder_pid, pending=[erasure])
        written = asyncio.ensure_future(write(writer))
        await _backends_waiting_on_a_lock(sessionmaker, 2, besides=holder_pid, pending=[erasure, written])
        await holder.rollback()  # the erasure goes on and commits; then the write takes its lock
        return await erasure, await written


async def _rows_of(committed, table: str, customer_id: int) -> int:
    async with committed["sessionmaker"]() as probe:
        return await probe.scalar(text(f"SELECT count(*) FROM {table} WHERE customer_id = :id"), {"id": customer_id})


async def test_events_in_flight_for_a_customer_being_erased_leave_no_event_or_activity(committed, test_settings):
    """A batch of events for a customer being erased must find the customer gone once it has its lock: a 422
    naming the event's customer, as for any unknown customer, and no event or daily activity row of the erased
    customer."""
    external_id = f"ERASE-RACE-{committed['tag']}"
    customer_id = await _customer(committed, test_settings, external_id)
    when = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    batch = {
        "events": [
            {
                "type": "transaction",
                "event_id": f"race-{committed['tag']}-1",
                "customer_id": external_id,
                "occurred_at": when,
                "amount": "12.50",
                "direction": "debit",
                "channel": "card",
            },
            {
                "type": "login",
                "event_id": f"race-{committed['tag']}-2",
                "customer_id": external_id,
                "occurred_at": when,
            },
        ]
    }
    headers = committed["headers"]["integration"]
    erased, recorded = await _write_while_erasing(
        committed, test_settings, external_id, lambda client: client.post("/v1/events", json=batch, headers=headers)
    )

    assert erased.status_code == 204, erased.text
    assert recorded.status_code == 422, recorded.text
    assert recorded.headers["content-type"] == "application/problem+json"
    pointers = [error["pointer"] for error in recorded.json()["errors"]]
    assert pointers == ["/events/0/customer_id", "/events/1/customer_id"]
    for table in ("customer_event", "customer_activity_daily"):
        left = await _rows_of(committed, table, customer_id)
        assert left == 0, f"{table} holds {left} rows of the erased customer"
    async with committed["sessionmaker"]() as probe:
        row = (
            await probe.execute(text("SELECT erased_at, last_txn_at FROM customer WHERE id = :id"), {"id": customer_id})
        ).one()
    assert row.erased_at is not None and row.last_txn_at is None


@pytest.mark.parametrize("kind", ["surveys", "complaints"])
async def test_a_survey_or_complaint_in_flight_for_a_customer_being_erased_keeps_none_of_its_words(
    committed, test_settings, kind
):
    """The same race for the customer's own words: the answer or complaint must not be stored after the erasure
    took the rest (a 422 naming /customer_id, as for any unknown customer)."""
    external_id = f"ERASE-{kind[:4].upper()}-{committed['tag']}"
    customer_id = await _customer(committed, test_settings, external_id)
    when = (datetime.now(UTC) - timedelta(minutes=5)).isoformat()
    common = {"event_id": f"race-{kind}-{committed['tag']}", "customer_id": external_id}
    body = (
        {**common, "kind": "nps", "score": 2, "comment": "Race Erasure wrote this", "channel": "mobile",
         "touchpoint": "app_rating_prompt", "occurred_at": when}
        if kind == "surveys"
        else {**common, "category": "fees", "channel": "phone", "description": "Race Erasure wrote this",
              "opened_at": when}
    )  # fmt: skip
    headers = committed["headers"]["admin"]
    erased, written = await _write_while_erasing(
        committed,
        test_settings,
        external_id,
        lambda client: client.post(f"/v1/feedback/{kind}", json=body, headers=headers),
    )

    assert erased.status_code == 204, erased.text
    assert written.status_code == 422, written.text
    assert [error["pointer"] for error in written.json()["errors"]] == ["/customer_id"]
    table = "survey_response" if kind == "surveys" else "complaint"
    assert await _rows_of(committed, table, customer_id) == 0


async def test_recommendation_feedback_in_flight_for_a_customer_being_erased_is_not_stored(committed, test_settings):
    """The same race for recommendation feedback: the event, whose id embeds the external id, must not be stored
    after the erasure (it is rejected one by one, as feedback for an erased customer always is) and counts in
    no propensity."""
    external_id = f"ERASE-FB-{committed['tag']}"
    customer_id = await _customer(committed, test_settings, external_id)
    async with committed["sessionmaker"]() as session:  # a list served to the customer, as the ranker writes it
        [recommendation_id] = await serve_list(session, customer_id, [RACE_PRODUCT])
        await session.commit()
    event_id = f"fb-{external_id}-1"
    batch = {
        "events": [
            {
                "event_id": event_id,
                "recommendation_id": str(recommendation_id),
                "customer_id": external_id,
                "type": "impression",
                "occurred_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat(),
            }
        ]
    }
    headers = committed["headers"]["admin"]
    erased, recorded = await _write_while_erasing(
        committed,
        test_settings,
        external_id,
        lambda client: client.post("/v1/feedback/events", json=batch, headers=headers),
    )

    assert erased.status_code == 204, erased.text
    assert recorded.status_code == 200, recorded.text
    result = recorded.json()
    assert result["accepted"] == 0 and [r["pointer"] for r in result["rejections"]] == ["/events/0/recommendation_id"]
    assert await _rows_of(committed, "feedback_event", customer_id) == 0
    async with committed["sessionmaker"]() as probe:
        counted = await probe.scalar(
            text("SELECT count(*) FROM propensity_stat WHERE product_code = :p"), {"p": RACE_PRODUCT}
        )
    assert counted == 0


async def test_two_creations_of_one_external_id_end_as_one_customer(committed):
    """Two PUTs of a new external id in flight together, both held on its row of customer_external_id (the test
    inserts it and holds it), then let go: one creates the customer (201), the other waits for it and updates it
    (200); one customer, and the map names it."""
    external_id = f"CREATE-RACE-{committed['tag']}"
    app, sessionmaker, headers = committed["app"], committed["sessionmaker"], committed["headers"]["integration"]
    async with sessionmaker() as holder, _client(app) as first, _client(app) as second:
        holder_pid = await holder.scalar(text("SELECT pg_backend_pid()"))
        await holder.execute(
            text("INSERT INTO customer_external_id (external_id, customer_id) VALUES (:e, 0)"), {"e": external_id}
        )
        puts = [
            asyncio.ensure_future(
                client.put(f"/v1/customers/{external_id}", json=customer_body(display_name=name), headers=headers)
            )
            for client, name in ((first, "First Racer"), (second, "Second Racer"))
        ]
        await _backends_waiting_on_a_lock(sessionmaker, 2, besides=holder_pid, pending=puts)
        await holder.rollback()
        responses = [await put for put in puts]
    async with sessionmaker() as probe:
        ids = (await probe.scalars(text("SELECT id FROM customer WHERE external_id = :e"), {"e": external_id})).all()
        committed["customer_ids"].extend(ids)
        assert sorted(response.status_code for response in responses) == [200, 201], [r.text for r in responses]
        assert len(ids) == 1 and await external_id_map_errors(probe, ids) == []


def _create(client, via: str, external_id: str, headers: dict):
    """A creation of the customer by PUT or by a one-line NDJSON import, its profile named "After Erasure"."""
    body = customer_body(display_name="After Erasure")
    if via == "put":
        return client.put(f"/v1/customers/{external_id}", json=body, headers=headers)
    line = json.dumps({"customer_id": external_id, **body}).encode()
    return client.post(
        "/v1/customers/import", content=line, headers={**headers, "Content-Type": "application/x-ndjson"}
    )


@pytest.mark.parametrize("via", ["put", "import"])
async def test_a_creation_of_an_external_id_being_erased_makes_a_new_customer_after_the_erasure(
    committed, test_settings, via
):
    """A PUT or an import of the external id an erasure is taking waits for it (on the id's row of
    customer_external_id, which the erasure locks first, as creations do: no deadlock), then creates a new customer
    under it (201; the import's claim finds the row gone and claims the id anew, created 1), not the erased row
    updated with the new profile."""
    external_id = f"ERASE-{via.upper()}-{committed['tag']}"
    customer_id = await _customer(committed, test_settings, external_id)
    headers = committed["headers"]["integration"]
    erased, created = await _write_while_erasing(
        committed, test_settings, external_id, lambda client: _create(client, via, external_id, headers)
    )

    assert erased.status_code == 204, erased.text
    if via == "put":
        assert created.status_code == 201, created.text
    else:
        assert created.status_code == 200 and created.json()["created"] == 1, created.text
    async with committed["sessionmaker"]() as probe:
        new_id = await probe.scalar(text("SELECT id FROM customer WHERE external_id = :e"), {"e": external_id})
        committed["customer_ids"].append(new_id)
        assert new_id != customer_id and await external_id_map_errors(probe, [customer_id, new_id]) == []
        old_name = await probe.scalar(text("SELECT display_name FROM customer WHERE id = :id"), {"id": customer_id})
        assert old_name is None  # the erased row kept nothing of the new profile


async def test_two_imports_creating_the_same_external_ids_end_as_one_customer_each(committed):
    """The same race for two NDJSON imports of the same new customers (each claims them in external id order, so
    neither deadlocks the other): every customer created once, by one import or the other, and updated by the
    other."""
    external_ids = [f"IMPORT-RACE-{committed['tag']}-{n}" for n in range(3)]
    body = "\n".join(json.dumps({"customer_id": e, **customer_body()}) for e in reversed(external_ids)).encode()
    app, sessionmaker = committed["app"], committed["sessionmaker"]
    headers = {**committed["headers"]["integration"], "Content-Type": "application/x-ndjson"}
    async with sessionmaker() as holder, _client(app) as first, _client(app) as second:
        holder_pid = await holder.scalar(text("SELECT pg_backend_pid()"))
        await holder.execute(
            text("INSERT INTO customer_external_id (external_id, customer_id) SELECT unnest(CAST(:e AS text[])), 0"),
            {"e": external_ids[1:]},
        )
        imports = [
            asyncio.ensure_future(c.post("/v1/customers/import", content=body, headers=headers))
            for c in (first, second)
        ]
        await _backends_waiting_on_a_lock(sessionmaker, 2, besides=holder_pid, pending=imports)
        await holder.rollback()
        responses = [await posted for posted in imports]
    async with sessionmaker() as probe:
        ids = (
            await probe.scalars(text("SELECT id FROM customer WHERE external_id = ANY(:e)"), {"e": external_ids})
        ).all()
        committed["customer_ids"].extend(ids)
        assert [response.status_code for response in responses] == [200, 200], [r.text for r in responses]
        summaries = [response.json() for response in responses]
        assert sum(summary["created"] for summary in summaries) == 3
        assert sum(summary["updated"] for summary in summaries) == 3
        assert len(ids) == 3 and await external_id_map_errors(probe, ids) == []


async def test_an_import_whose_new_external_id_another_writer_claims_meanwhile_updates_that_customer(committed):
    """An import of two new external ids, one of which another transaction (a creation, as PUT writes it: the map's
    row and the customer's) has claimed and holds uncommitted: the import's insert of it waits, the other commits,
    and the import claims its ids again as a lone claim does (app.customers.customer_import: _MERGE after _MERGE_NEW
    lost the race), updating that customer and creating the other; each external id one customer, the map true."""
    taken, fresh = (f"IMPORT-CLAIMED-{committed['tag']}-{n}" for n in range(2))
    body = "\n".join(
        json.dumps({"customer_id": e, **customer_body(display_name="Imported")}) for e in (fresh, taken)
    ).encode()
    app, sessionmaker = committed["app"], committed["sessionmaker"]
    headers = {**committed["headers"]["integration"], "Content-Type": "application/x-ndjson"}
    async with sessionmaker() as holder, _client(app) as client:
        holder_pid = await holder.scalar(text("SELECT pg_backend_pid()"))
        holder_id = await holder.scalar(
            text(
                "WITH m AS (INSERT INTO customer_external_id (external_id, customer_id) "
                "VALUES (:e, nextval('customer_id_seq')) RETURNING customer_id) "
                "INSERT INTO customer (id, external_id, segment, onboarded_at, display_name) "
                "SELECT customer_id, :e, 'retail', now(), 'Created Meanwhile' FROM m RETURNING id"
            ),
            {"e": taken},
        )
        committed["customer_ids"].append(holder_id)
        posted = asyncio.ensure_future(client.post("/v1/customers/import", content=body, headers=headers))
        await _backends_waiting_on_a_lock(sessionmaker, 1, besides=holder_pid, pending=[posted])
        await holder.commit()
        response = await posted
    async with sessionmaker() as probe:
        rows = dict(
            (
                await probe.execute(
                    text("SELECT external_id, id FROM customer WHERE external_id IN (:a, :b)"), {"a": taken, "b": fresh}
                )
            ).all()
        )
        committed["customer_ids"].extend(rows.values())
        assert response.status_code == 200, response.text
        assert (response.json()["created"], response.json()["updated"]) == (1, 1)
        assert rows[taken] == holder_id and len(rows) == 2
        assert await external_id_map_errors(probe, rows.values()) == []
        names = await probe.scalars(
            text("SELECT display_name FROM customer WHERE id = ANY(:ids)"), {"ids": list(rows.values())}
        )
        assert set(names.all()) == {"Imported"}


async def test_concurrent_imports_of_overlapping_new_external_ids_make_one_customer_each(committed):
    """Four imports at once, each of 60 of the same 80 new external ids in its own order, three times: the plain
    inserts of all but one import meet the others' ids and fall back to the claim (app.customers.customer_import);
    none deadlocks or fails, each external id is one customer, the map is true, and every line is counted once as
    created or updated."""
    rng = random.Random(20)
    sessionmaker = committed["sessionmaker"]
    for round_no in range(3):
        pool = [f"IMPORT-MANY-{committed['tag']}-{round_no}-{n:02d}" for n in range(80)]

        async def one(worker: int, ids: list[str]) -> tuple[int, int]:
            lines = [
                (n + 1, json.dumps({"customer_id": e, **customer_body(display_name=f"W{worker}")}).encode())
                for n, e in enumerate(ids)
            ]
            async with sessionmaker() as session:
                accepted, created, updated, rejections, _ = await customer_import.import_lines(session, lines)
                await session.commit()
            assert (accepted, rejections) == (60, [])
            return created, updated

        counts = await asyncio.gather(*(one(worker, rng.sample(pool, 60)) for worker in range(4)))
        async with sessionmaker() as probe:
            ids = (await probe.scalars(text("SELECT id FROM customer WHERE external_id = ANY(:e)"), {"e": pool})).all()
            committed["customer_ids"].extend(ids)
            distinct = await probe.scalar(
                text("SELECT count(DISTINCT external_id) FROM customer WHERE external_id = ANY(:e)"), {"e": pool}
            )
            assert len(ids) == distinct and await external_id_map_errors(probe, ids) == []
        assert sum(created for created, _ in counts) == len(ids)
        assert sum(created + updated for created, updated in counts) == 4 * 60
