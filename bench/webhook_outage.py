"""A webhook receiver that is down for a while receives every event once it recovers: the API served by uvicorn on
a scratch database (its own delivery worker, started by the lifespan), a real receiver on loopback, complaints
opened and moved through the HTTP API while the receiver is down (connections refused), then the receiver back.

    .venv/bin/python -m bench.webhook_outage --down-seconds 60      # the default retry settings: the real thing

Prints what arrived (each event once? signed? in order per customer?) and how long after the recovery the last
event arrived. tests/webhooks/test_live_outage.py runs it scaled down."""

import argparse
import asyncio
import json
import time
from dataclasses import dataclass

import asyncpg
import httpx

from bench.harness import create_key, scratch_database, serve
from bench.webhook_receiver import Receiver
from tests.factories import customer_body

MOVES = ["in_progress", "resolved", "closed", "open"]  # a lifecycle that cycles
LIGHT = {"TIERWISE_HOT_READS": "false", "TIERWISE_DB_POOL_SIZE": "6", "TIERWISE_DB_MAX_OVERFLOW": "2"}
"""A few connections are plenty here (the database server is shared); speed is not what this measures."""


@dataclass
class OutageResult:
    events: int
    delivered_once: bool
    all_verified: bool
    in_order: bool
    duplicates: int
    down_s: float
    drained_after_recovery_s: float
    attempts: int
    max_attempts_per_delivery: int
    refused_attempts: int


async def run_outage(
    dsn: str,
    base: str,
    admin_key: str,
    *,
    customers: int,
    moves_per_customer: int,
    down_s: float,
    drain_timeout_s: float | None = None,
) -> OutageResult:
    headers = {"X-API-Key": admin_key}
    connection = await asyncpg.connect(dsn)  # for the attempt figures at the end (taken now: the server is shared)
    receiver = await Receiver().start()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        hook = (
            await client.post("/v1/webhooks", json={"url": receiver.url, "event_types": ["complaint.status_changed"]})
        ).json()
        receiver.secret = hook["secret"]
        complaints = {}
        for i in range(customers):
            external = f"OUT-{i:04d}"
            assert (await client.put(f"/v1/customers/{external}", json=customer_body())).status_code == 201
            opened = await client.post(
                "/v1/feedback/complaints",
                json={
                    "event_id": f"out-{i}",
                    "customer_id": external,
                    "category": "fees",
                    "channel": "phone",
                    "description": "outage test",
                },
            )
            complaints[external] = opened.json()["id"]
        await _until(lambda: len(receiver.delivered()) >= customers, 60)  # the opens, while the receiver is up

        await receiver.stop()
        went_down = time.monotonic()
        for step in range(moves_per_customer):  # spread over the first half of the downtime
            for complaint_id in complaints.values():
                response = await client.post(
                    f"/v1/feedback/complaints/{complaint_id}/transitions", json={"to_status": MOVES[step % len(MOVES)]}
                )
                assert response.status_code == 200, response.text
            await asyncio.sleep(down_s / 2 / moves_per_customer)
        await asyncio.sleep(max(0.0, down_s - (time.monotonic() - went_down)))
        await receiver.start()
        recovered = time.monotonic()
        total = customers * (1 + moves_per_customer)
        await _until(
            lambda: len({r.event_id for r in receiver.delivered()}) >= total, drain_timeout_s or down_s * 10 + 60
        )
        drained = time.monotonic() - recovered
        await asyncio.sleep(1)  # a duplicate would arrive by now
    delivered = receiver.delivered()
    per_customer: dict[str, list[str]] = {}
    for received in delivered:
        per_customer.setdefault(received.body["data"]["customer_id"], []).append(received.body["data"]["to_status"])
    expected = ["open", *(MOVES[s % len(MOVES)] for s in range(moves_per_customer))]
    try:
        stats = await connection.fetchrow(
            "SELECT count(*) AS attempts, count(*) FILTER (WHERE error = 'ConnectError') AS refused, "
            "(SELECT max(n) FROM (SELECT count(*) AS n FROM webhook_attempt GROUP BY delivery_id) x) AS most "
            "FROM webhook_attempt"
        )
    finally:
        await connection.close()
    await receiver.stop()
    ids = [r.event_id for r in delivered]
    return OutageResult(
        events=total,
        delivered_once=len(ids) == len(set(ids)) == total,
        all_verified=all(r.verified for r in delivered),
        in_order=all(statuses == expected for statuses in per_customer.values()) and len(per_customer) == customers,
        duplicates=len(ids) - len(set(ids)),
        down_s=round(recovered - went_down, 1),
        drained_after_recovery_s=round(drained, 2),
        attempts=stats["attempts"],
        max_attempts_per_delivery=stats["most"],
        refused_attempts=stats["refused"],
    )


async def _until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("not everything arrived in time")
        await asyncio.sleep(0.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--down-seconds", type=float, default=60)
    parser.add_argument("--customers", type=int, default=20)
    parser.add_argument("--moves", type=int, default=4, help="complaint moves per customer while the receiver is down")
    args = parser.parse_args()
    with scratch_database() as dsn:
        key = asyncio.run(create_key(dsn))
        with serve(dsn, env=LIGHT) as base:
            result = asyncio.run(
                run_outage(
                    dsn, base, key, customers=args.customers, moves_per_customer=args.moves, down_s=args.down_seconds
                )
            )
    print(json.dumps(result.__dict__, indent=2))


if __name__ == "__main__":
    main()
