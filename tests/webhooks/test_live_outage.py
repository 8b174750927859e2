"""The issue's promise, on a live uvicorn (its lifespan runs the delivery worker): a receiver that is down receives
every event once it recovers, each once, signed, in order per customer. Scaled down: 3 s down, retries after at
most 0.4 s; bench/webhook_outage.py runs the same at full scale."""

import asyncio

from app.core.migrations import upgrade_to_head
from bench.harness import create_key, plain_dsn, serve
from bench.webhook_outage import LIGHT, run_outage

FAST = {
    "TIERWISE_WEBHOOK_MAX_ATTEMPTS": "100",
    "TIERWISE_WEBHOOK_POLL_SECONDS": "0.05",
    "TIERWISE_WEBHOOK_BACKOFF_BASE_S": "0.05",
    "TIERWISE_WEBHOOK_BACKOFF_MAX_S": "0.4",
    "TIERWISE_WEBHOOK_TIMEOUT_S": "3",
    **LIGHT,
}


async def test_a_receiver_down_for_a_while_gets_every_event_once_it_recovers_from_a_live_server(scratch_database):
    url = scratch_database()
    await asyncio.to_thread(upgrade_to_head, url)
    dsn = plain_dsn(url)
    key = await create_key(dsn)
    with serve(dsn, env=FAST) as base:
        result = await run_outage(dsn, base, key, customers=5, moves_per_customer=3, down_s=3, drain_timeout_s=30)
    assert result.delivered_once and result.all_verified and result.in_order, result
    assert result.refused_attempts > 0 and result.duplicates == 0
    assert result.drained_after_recovery_s < 5, result
