"""Delivery against a real receiver on loopback: it fails, times out, is down and recovers; every event arrives,
signed (checked with the documented snippet), once, in order per customer. Dead letters and redelivery, leases
across a crash, two workers on separate connections, pause and resume, secret rotation, metrics, retention."""

import asyncio
import logging

from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from app.core.db import create_sessionmaker
from bench.webhook_receiver import documented_verify
from tests.webhooks.conftest import wait_for


async def _states(committed, hook_id: int) -> dict[str, int]:
    async with committed.engine.connect() as connection:
        rows = (
            await connection.execute(
                text("SELECT state, count(*) FROM webhook_delivery WHERE subscription_id = :id GROUP BY state"),
                {"id": hook_id},
            )
        ).all()
    return dict(rows)


async def _running(worker):
    return asyncio.create_task(worker.run())


async def _stop(task):
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_receiver_that_fails_times_out_and_is_down_gets_every_event_once_it_recovers(committed, receiver):
    hook = await committed.subscribe(receiver.url)
    receiver.secret = hook["secret"]
    customers = [9_100_001, 9_100_002, 9_100_003]
    sent: dict[int, list[str]] = {c: [] for c in customers}

    async def emit_round(status: str) -> None:
        for customer in customers:
            sent[customer].append(await committed.emit(customer, status))

    worker = await _running(committed.worker())
    try:
        receiver.mode = "fail"
        await emit_round("open")
        await wait_for(lambda: sum(r.status == 500 for r in receiver.requests) >= 6)
        receiver.mode, receiver.hang_s = "hang", 4.0  # twice the sender's timeout
        await emit_round("in_progress")
        await wait_for(
            lambda: committed.scalar(
                "SELECT count(*) FROM webhook_attempt a JOIN webhook_delivery d "
                "ON d.id = a.delivery_id WHERE d.subscription_id = :id "
                "AND a.error = 'Timeout'",
                id=hook["id"],
            )
        )
        await receiver.stop()  # down: connections refused
        await emit_round("resolved")
        await wait_for(
            lambda: committed.scalar(
                "SELECT count(*) FROM webhook_attempt a JOIN webhook_delivery d "
                "ON d.id = a.delivery_id WHERE d.subscription_id = :id "
                "AND a.error = 'ConnectError'",
                id=hook["id"],
            )
        )
        await asyncio.sleep(1.5)  # down a while longer (scaled down from a minute)
        receiver.mode = "ok"
        await receiver.start()
        await emit_round("closed")
        everything = sum(len(ids) for ids in sent.values())
        await wait_for(lambda: len(receiver.delivered()) >= everything, timeout=30)
        await asyncio.sleep(0.3)  # anything sent twice would arrive by now
    finally:
        await _stop(worker)

    delivered = receiver.delivered()
    assert sorted(r.event_id for r in delivered) == sorted(e for ids in sent.values() for e in ids)  # each once
    assert all(r.verified for r in delivered)
    for customer, ids in sent.items():
        assert [r.event_id for r in delivered if r.body["data"]["customer_id"] == f"C{customer}"] == ids
    assert await _states(committed, hook["id"]) == {"delivered": 12}
    body = delivered[0].body
    assert set(body) == {"id", "type", "created_at", "data"} and body["type"] == "complaint.status_changed"
    assert body["id"] == delivered[0].event_id


async def test_dead_after_the_last_attempt_then_redelivered_by_hand(committed, receiver):
    committed.settings = committed.settings.model_copy(update={"webhook_max_attempts": 3})
    hook = await committed.subscribe(receiver.url)
    receiver.secret, receiver.mode = hook["secret"], "fail"
    first = await committed.emit(9_200_001, "open")
    second = await committed.emit(9_200_001, "in_progress")
    worker = await _running(committed.worker())
    try:
        # both die: the dead first one does not hold the second back for ever
        await wait_for(
            lambda: committed.scalar(
                "SELECT count(*) = 2 FROM webhook_delivery WHERE subscription_id = :id AND state = 'dead'",
                id=hook["id"],
            )
        )
        assert [r.event_id for r in receiver.requests] == [first] * 3 + [second] * 3
        async with committed.client() as client:
            dead = (
                await client.get(f"/v1/webhooks/{hook['id']}/deliveries?state=dead", headers=committed.headers)
            ).json()["items"]
            assert [d["event_id"] for d in dead] == [second, first]  # newest first
            detail = (
                await client.get(f"/v1/webhooks/{hook['id']}/deliveries/{dead[1]['id']}", headers=committed.headers)
            ).json()
            assert [(a["status_code"], a["error"]) for a in detail["attempts_log"]] == [(500, "HTTP 500")] * 3
            assert detail["state"] == "dead" and detail["attempts"] == 3 and detail["finished_at"]

            receiver.mode = "ok"
            one = await client.post(
                f"/v1/webhooks/{hook['id']}/deliveries/{dead[1]['id']}/redeliver", headers=committed.headers
            )
            assert one.status_code == 202 and one.headers["Location"].endswith(f"/deliveries/{dead[1]['id']}")
            assert one.json()["state"] == "pending" and one.json()["attempts"] == 0
            await wait_for(lambda: [r.event_id for r in receiver.delivered()] == [first])
            rest = await client.post(f"/v1/webhooks/{hook['id']}/deliveries/redeliver-dead", headers=committed.headers)
            assert rest.status_code == 200 and rest.json() == {"requeued": 1}
            await wait_for(lambda: [r.event_id for r in receiver.delivered()] == [first, second])
            audit = (await client.get("/v1/audit?entity_type=webhook", headers=committed.headers)).json()["items"]
            assert [a["action"] for a in audit[:2]] == ["webhook.redeliver_dead", "webhook.redeliver"]
    finally:
        await _stop(worker)


async def test_a_later_event_of_a_customer_waits_for_the_earlier_one_others_go_on(committed, receiver):
    hook = await committed.subscribe(receiver.url)
    receiver.secret = hook["secret"]
    a1 = await committed.emit(9_300_001, "open")
    a2 = await committed.emit(9_300_001, "in_progress")
    await committed.emit(9_300_002, "open")
    b2 = await committed.emit(9_300_002, "in_progress")
    receiver.fail_times[a1] = 5
    worker = await _running(committed.worker())
    try:
        await wait_for(lambda: len(receiver.delivered()) == 4)
    finally:
        await _stop(worker)
    order = [r.event_id for r in receiver.delivered()]
    assert order.index(b2) < order.index(a1) < order.index(a2)  # B went on while A's first was failing
    assert [r.event_id for r in receiver.requests if r.event_id in (a1, a2)] == [a1] * 6 + [a2]


async def test_two_workers_on_separate_connections_never_send_one_event_twice(committed, receiver, database_url):
    hook = await committed.subscribe(receiver.url)
    receiver.secret, receiver.delay_s = hook["secret"], 0.03
    events = [await committed.emit(9_400_000 + i % 25, "open") for i in range(60)]
    engines = [create_async_engine(database_url, pool_size=4) for _ in range(2)]
    settings = committed.settings.model_copy(update={"webhook_concurrency": 3})
    workers = [committed.worker(settings, create_sessionmaker(engine)) for engine in engines]
    claimed = [0, 0]
    for index, worker in enumerate(workers):
        claim = worker.claim

        async def counting(limit, claim=claim, index=index):
            got = await claim(limit)
            claimed[index] += len(got)
            return got

        worker.claim = counting
    tasks = [await _running(worker) for worker in workers]
    try:
        await wait_for(lambda: len(receiver.delivered()) >= len(events), timeout=30)
        await asyncio.sleep(0.3)
    finally:
        for task in tasks:
            await _stop(task)
        for engine in engines:
            await engine.dispose()
    assert sorted(r.event_id for r in receiver.requests) == sorted(events)  # each sent once, none twice
    assert receiver.max_in_flight_per_event == 1
    assert claimed[0] > 0 and claimed[1] > 0 and sum(claimed) == len(events)


async def test_concurrent_claims_take_disjoint_deliveries(committed, receiver, database_url):
    await committed.subscribe(receiver.url)
    for i in range(20):
        await committed.emit(9_500_000 + i, "open")
    engines = [create_async_engine(database_url) for _ in range(2)]
    try:
        workers = [committed.worker(sessionmaker=create_sessionmaker(engine)) for engine in engines]
        await workers[0].fan_out()
        first, second = await asyncio.gather(workers[0].claim(15), workers[1].claim(15))
        ids = [c.delivery_id for c in first] + [c.delivery_id for c in second]
        assert len(ids) == len(set(ids)) == 20
        assert await workers[0].claim(20) == []  # leased
    finally:
        for engine in engines:
            await engine.dispose()


async def test_a_worker_that_dies_mid_send_leaves_the_event_to_be_sent_again_with_the_same_id(committed, receiver):
    hook = await committed.subscribe(receiver.url)
    receiver.secret = hook["secret"]
    event = await committed.emit(9_600_001, "open")
    crashed, survivor = committed.worker(), committed.worker()
    crashed.lease_s = 0.3
    await crashed.fan_out()
    [claim] = await crashed.claim(5)
    await crashed.send(claim)  # sent, then the process "dies" before recording it
    assert await survivor.claim(5) == []  # the lease holds
    await asyncio.sleep(0.4)
    [again] = await survivor.claim(5)
    assert (again.delivery_id, again.event_id, again.attempt) == (claim.delivery_id, event, 2)
    assert await survivor.deliver(again) == "delivered"
    assert await crashed.record(claim, await crashed.send(claim)) is None  # a stale claim records nothing
    assert [r.event_id for r in receiver.requests] == [event, event, event]
    assert all(r.verified for r in receiver.requests)


async def test_a_paused_subscription_keeps_its_events_and_sends_them_on_resume(committed, receiver):
    hook = await committed.subscribe(receiver.url, status="paused")
    receiver.secret = hook["secret"]
    events = [await committed.emit(9_700_001, s) for s in ("open", "in_progress")]
    worker = committed.worker()
    await worker.fan_out()
    assert await worker.claim(10) == []
    assert await _states(committed, hook["id"]) == {"pending": 2}
    async with committed.client() as client:
        resumed = await client.patch(f"/v1/webhooks/{hook['id']}", json={"status": "active"}, headers=committed.headers)
        assert resumed.status_code == 200
    task = await _running(worker)
    try:
        await wait_for(lambda: [r.event_id for r in receiver.delivered()] == events)
    finally:
        await _stop(task)


async def test_after_a_rotation_both_secrets_sign_until_the_overlap_ends(committed, receiver, caplog):
    hook = await committed.subscribe(receiver.url)
    async with committed.client() as client:
        rotated = await client.post(
            f"/v1/webhooks/{hook['id']}/rotate-secret", json={"overlap_hours": 1}, headers=committed.headers
        )
        assert rotated.status_code == 200 and rotated.json()["secret"] != hook["secret"]
        assert rotated.json()["previous_secret_expires_at"] is not None
    receiver.secret = rotated.json()["secret"]
    event = await committed.emit(9_800_001, "open")
    receiver.fail_times[event] = 1
    with caplog.at_level(logging.DEBUG):
        worker = await _running(committed.worker())
        try:
            await wait_for(lambda: receiver.delivered())
        finally:
            await _stop(worker)
    assert "webhook attempt" in caplog.text  # logged: ids, type, result; never the URL, a payload or a secret
    for private in (receiver.url, f"127.0.0.1:{receiver.port}", "C9800001", hook["secret"], rotated.json()["secret"]):
        assert private not in caplog.text
    [received] = receiver.delivered()
    assert len(receiver.requests) == 2 and receiver.requests[0].status == 500
    assert received.event_id == event and received.signature.count("v1=") == 2
    verify = documented_verify()
    assert verify(rotated.json()["secret"], received.raw, received.signature)
    assert verify(hook["secret"], received.raw, received.signature)
    assert not verify("whsec_not-the-secret", received.raw, received.signature)
    assert not verify(hook["secret"], received.raw + b" ", received.signature)


async def test_metrics_count_outcomes_and_show_the_queue_lag(committed, receiver):
    hook = await committed.subscribe(receiver.url)
    receiver.secret, receiver.mode = hook["secret"], "fail"

    def value(name, **labels):
        return REGISTRY.get_sample_value(name, labels) or 0

    before = (
        value("tierwise_webhook_attempts_total", result="5xx"),
        value("tierwise_webhook_deliveries_total", outcome="delivered"),
    )
    await committed.emit(9_900_001, "open")
    worker = committed.worker()
    await worker.fan_out()
    await asyncio.sleep(0.2)
    pending, lag = await worker.update_queue_metrics()
    assert pending >= 1 and lag >= 0.2 and value("tierwise_webhook_queue_lag_seconds") == lag
    [claim] = await worker.claim(5)
    assert await worker.deliver(claim) == "pending"
    receiver.mode = "ok"
    await asyncio.sleep(0.25)
    [claim] = await worker.claim(5)
    assert await worker.deliver(claim) == "delivered"
    assert value("tierwise_webhook_attempts_total", result="5xx") == before[0] + 1
    assert value("tierwise_webhook_deliveries_total", outcome="delivered") == before[1] + 1
    async with committed.client() as client:
        scraped = (await client.get("/metrics")).text
    assert "tierwise_webhook_queue_lag_seconds" in scraped and "tierwise_webhook_attempts_total" in scraped


async def test_delivered_deliveries_are_purged_after_the_retention_period(committed, receiver):
    from app.main import purge

    hook = await committed.subscribe(receiver.url)
    receiver.secret = hook["secret"]
    kept, old = await committed.emit(9_990_001, "open"), await committed.emit(9_990_002, "open")
    worker = committed.worker()
    await worker.fan_out()
    for claim in await worker.claim(5):
        assert await worker.deliver(claim) == "delivered"
    async with committed.engine.begin() as connection:
        await connection.execute(
            text(
                "UPDATE webhook_delivery d SET finished_at = now() - interval '8 days' FROM webhook_event e "
                "WHERE e.id = d.event_id AND e.event_id = :old"
            ),
            {"old": old},
        )
        await connection.execute(
            text("UPDATE webhook_event SET fanned_out_at = now() - interval '8 days' WHERE event_id = :old"),
            {"old": old},
        )
    attempts_of = (
        "SELECT count(*) FROM webhook_attempt a JOIN webhook_delivery d ON d.id = a.delivery_id "
        "JOIN webhook_event e ON e.id = d.event_id WHERE e.event_id = CAST(:event AS uuid)"
    )
    old_deliveries = await committed.scalar(
        "SELECT array_agg(d.id) FROM webhook_delivery d JOIN webhook_event e ON e.id = d.event_id "
        "WHERE e.event_id = CAST(:event AS uuid)",
        event=old,
    )
    assert await committed.scalar(attempts_of, event=old) >= 1
    counts = await purge(committed.sessionmaker, committed.settings)
    assert counts["webhook_deliveries_purged"] >= 1 and counts["webhook_events_purged"] >= 1
    # the purged deliveries' log went with them (no cascade: webhook_attempt has no key to the partitioned table)
    orphans = "SELECT count(*) FROM webhook_attempt WHERE delivery_id = ANY(:ids)"
    assert await committed.scalar(orphans, ids=old_deliveries) == 0
    assert await committed.scalar(attempts_of, event=kept) >= 1
    remaining = await committed.scalar(
        "SELECT array_agg(event_id::text) FROM webhook_event WHERE event_id IN (CAST(:a AS uuid), CAST(:b AS uuid))",
        a=kept,
        b=old,
    )
    assert remaining == [kept]


async def test_a_success_after_failures_makes_the_subscriptions_other_retries_due_at_once(committed, receiver):
    hook = await committed.subscribe(receiver.url)
    receiver.secret, receiver.mode = hook["secret"], "fail"
    events = [await committed.emit(9_995_000 + i, "open") for i in range(3)]
    worker = committed.worker()
    await worker.fan_out()
    for claim in await worker.claim(5):
        assert await worker.deliver(claim) == "pending"
    async with committed.engine.begin() as connection:  # all three wait an hour, but the first is due now
        await connection.execute(
            text(
                "UPDATE webhook_delivery d SET next_attempt_at = now() + CASE WHEN e.event_id = CAST(:first AS uuid) "
                "THEN interval '0' ELSE interval '1 hour' END FROM webhook_event e "
                "WHERE e.id = d.event_id AND d.subscription_id = :id"
            ),
            {"first": events[0], "id": hook["id"]},
        )
    receiver.mode = "ok"
    [back] = await worker.claim(5)
    assert back.event_id == events[0] and await worker.deliver(back) == "delivered"
    rest = await worker.claim(5)
    assert sorted(claim.event_id for claim in rest) == sorted(events[1:])


async def test_deleting_a_subscription_deletes_its_deliveries_log(committed, receiver):
    hook = await committed.subscribe(receiver.url)
    receiver.secret = hook["secret"]
    await committed.emit(9_996_001, "open")
    worker = committed.worker()
    await worker.fan_out()
    for claim in await worker.claim(5):
        assert await worker.deliver(claim) == "delivered"
    deliveries = await committed.scalar(
        "SELECT array_agg(id) FROM webhook_delivery WHERE subscription_id = :id", id=hook["id"]
    )
    logged = "SELECT count(*) FROM webhook_attempt WHERE delivery_id = ANY(:ids)"
    assert await committed.scalar(logged, ids=deliveries) >= 1
    async with committed.client() as client:
        assert (await client.delete(f"/v1/webhooks/{hook['id']}", headers=committed.headers)).status_code == 204
    assert await committed.scalar(logged, ids=deliveries) == 0
