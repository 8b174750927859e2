"""Webhook deliveries pass the W3C trace context on: the traceparent of the request whose change emitted the event
(its trace id and flags), with a span id of the delivery's own."""

import re
from datetime import date

from app.webhooks.delivery import DeliveryWorker
from tests.tiering.test_assignment import make_customer

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
INCOMING = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
VALID = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})")


async def test_webhook_deliveries_carry_the_trace_of_the_change(client, as_role, wealth, sessionmaker, fast, receiver):
    hook = await client.post(
        "/v1/webhooks", headers=as_role("admin"), json={"url": receiver.url, "event_types": ["tier.upgraded"]}
    )
    assert hook.status_code == 201, hook.text
    receiver.secret = hook.json()["secret"]
    await make_customer(client, as_role, "T2", "1000.00")  # mass, no event: the test's only event is the next one
    written = await client.put(
        "/v1/customers/T2/holdings",
        headers={**as_role("integration"), "traceparent": INCOMING},
        json={
            "holdings": [{"product_code": "savings_account", "balance": "700000.00", "as_of": date.today().isoformat()}]
        },
    )
    assert written.status_code == 200, written.text
    worker = DeliveryWorker(fast, sessionmaker)
    try:
        await worker.fan_out()
        for claim in await worker.claim(10):
            assert await worker.deliver(claim) == "delivered"
    finally:
        await worker.client.aclose()
    [received] = receiver.delivered()
    assert received.verified and received.event_type == "tier.upgraded"
    trace_id, span_id, flags = VALID.fullmatch(received.headers["traceparent"]).groups()
    assert (trace_id, flags) == (TRACE_ID, "01")
    assert span_id != VALID.fullmatch(written.headers["traceparent"]).group(2)  # the delivery's own span


async def test_an_event_emitted_outside_any_request_is_sent_with_a_new_trace(committed, receiver):
    hook = await committed.subscribe(receiver.url)
    receiver.secret = hook["secret"]
    await committed.emit(9_200_001, "open")  # no request, no trace: a new one per delivery
    worker = committed.worker()
    try:
        await worker.fan_out()
        for claim in await worker.claim(10):
            assert claim.traceparent is None
            assert await worker.deliver(claim) == "delivered"
    finally:
        await worker.client.aclose()
    [received] = receiver.delivered()
    assert VALID.fullmatch(received.headers["traceparent"])
