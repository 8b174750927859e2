"""A bounded soak on loopback: the API under uvicorn, a mixed workload (profile and tier reads,
recommendations with feedback, event intake) from an asyncio + httpx load generator, for a fixed time and at most
a fixed number of requests. Records error rate, p50/p99 latency per route, server memory at start and end, and
connection pool use (scraped from /metrics). Two instances with one killed mid-run: bench/soak_instances.py.

Usage: python -m bench.soak [--duration 180] [--concurrency 16] [--customers 2000] [--max-requests 300000]
                            [--json results.json]
"""

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import httpx

from app.core.embedded import to_async_url
from bench.harness import create_key, scratch_database, serve

ROUTES = (
    "GET /v1/customers/{id}",
    "GET /v1/customers/{id}/tiers",
    "GET /v1/customers/{id}/recommendations",
    "POST /v1/feedback/events",
    "POST /v1/events",
)


async def seed(dsn: str, customers: int) -> None:
    from app.core.config import Settings
    from app.core.db import create_engine, create_sessionmaker
    from app.demo import generate_demo_bank, load_default_products
    from app.tiering.policies import load_default_policies

    engine = create_engine(to_async_url(dsn), Settings(database_url=dsn))
    try:
        async with create_sessionmaker(engine)() as session:
            await load_default_products(session)
            await load_default_policies(session)
            await generate_demo_bank(session, customers, seed=11)
            await session.commit()
    finally:
        await engine.dispose()


def _metric(text: str, name: str) -> float | None:
    match = re.search(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+-]+)$", text, re.M)
    return float(match.group(1)) if match else None


class Recorder:
    def __init__(self) -> None:
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.status: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.requests = 0
        self.feedback_rejected = 0  # feedback events refused: e.g. on a recommendation_id that was not stored

    def note(self, route: str, started: float, status: str) -> None:
        self.requests += 1
        self.latency[route].append((time.perf_counter() - started) * 1000)
        self.status[route][status] += 1


async def call(client: httpx.AsyncClient, recorder: Recorder, route: str, method: str, url: str, **kwargs):
    started = time.perf_counter()
    try:
        response = await client.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        recorder.note(route, started, type(exc).__name__)
        return None
    recorder.note(route, started, str(response.status_code))
    return response


async def worker(
    base: str,
    keys: dict[str, str],
    customers: int,
    deadline: float,
    budget: list[int],
    recorder: Recorder,
    rng: random.Random,
) -> None:
    app = {"X-API-Key": keys["app"]}
    integration = {"X-API-Key": keys["integration"]}
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=2)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            customer = f"C{rng.randint(1, customers):08d}"
            pick = rng.random()
            if pick < 0.35:
                await call(client, recorder, ROUTES[0], "GET", f"/v1/customers/{customer}", headers=app)
            elif pick < 0.60:
                await call(client, recorder, ROUTES[1], "GET", f"/v1/customers/{customer}/tiers", headers=app)
            elif pick < 0.85:
                served = await call(
                    client, recorder, ROUTES[2], "GET", f"/v1/customers/{customer}/recommendations", headers=app
                )
                items = served.json().get("items", []) if served is not None and served.status_code == 200 else []
                if items:
                    now = datetime.now(UTC).isoformat()
                    events = [
                        {
                            "type": "impression",
                            "event_id": f"soak-{uuid.uuid4().hex}",
                            "customer_id": customer,
                            "recommendation_id": item["recommendation_id"],
                            "occurred_at": now,
                            "channel": "mobile",
                        }
                        for item in items
                    ]
                    if rng.random() < 0.2:
                        events.append(
                            {
                                "type": "click",
                                "event_id": f"soak-{uuid.uuid4().hex}",
                                "customer_id": customer,
                                "recommendation_id": items[0]["recommendation_id"],
                                "occurred_at": now,
                                "channel": "mobile",
                            }
                        )
                    reported = await call(
                        client, recorder, ROUTES[3], "POST", "/v1/feedback/events", headers=app, json={"events": events}
                    )
                    if reported is not None and reported.status_code == 200:
                        recorder.feedback_rejected += reported.json()["rejected"]
            else:
                when = datetime.now(UTC) - timedelta(minutes=rng.randint(1, 600))
                batch = [
                    {
                        "type": "transaction",
                        "event_id": f"soak-{uuid.uuid4().hex}",
                        "customer_id": f"C{rng.randint(1, customers):08d}",
                        "occurred_at": (when + timedelta(seconds=i)).isoformat(),
                        "amount": f"{rng.randint(100, 50000) / 100:.2f}",
                        "direction": rng.choice(["debit", "credit"]),
                        "channel": "card",
                    }
                    for i in range(10)
                ]
                await call(
                    client, recorder, ROUTES[4], "POST", "/v1/events", headers=integration, json={"events": batch}
                )


async def monitor(base: str, deadline: float, samples: list[dict]) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=10) as client:
        while True:
            text = (await client.get("/metrics")).text
            samples.append(
                {
                    "t": time.monotonic(),
                    "rss_mb": (_metric(text, "process_resident_memory_bytes") or 0) / 2**20,
                    "checked_out": _metric(text, "tierwise_db_pool_checked_out"),
                    "pool_size": _metric(text, "tierwise_db_pool_size"),
                    "overflow": _metric(text, "tierwise_db_pool_overflow"),
                }
            )
            if time.monotonic() >= deadline:
                return
            await asyncio.sleep(min(2.0, max(0.0, deadline - time.monotonic())))


async def soak(base: str, keys: dict[str, str], args) -> dict:
    recorder, samples, budget = Recorder(), [], [args.max_requests]
    async with httpx.AsyncClient(base_url=base) as client:  # warm-up, not recorded
        for n in range(1, 50):
            await client.get(f"/v1/customers/C{n:08d}/recommendations", headers={"X-API-Key": keys["app"]})
    started = time.monotonic()
    deadline = started + args.duration
    await asyncio.gather(
        monitor(base, deadline, samples),
        *(
            worker(base, keys, args.customers, deadline, budget, recorder, random.Random(i))
            for i in range(args.concurrency)
        ),
    )
    elapsed = time.monotonic() - started
    routes = {}
    for route in ROUTES:
        lat = sorted(recorder.latency[route])
        statuses = dict(recorder.status[route])
        errors = sum(n for s, n in statuses.items() if not s.isdigit() or int(s) >= 500)
        if not lat:
            continue
        routes[route] = {
            "requests": len(lat),
            "errors_5xx_or_transport": errors,
            "statuses": statuses,
            "p50_ms": round(statistics.median(lat), 2),
            "p99_ms": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 2),
            "max_ms": round(lat[-1], 2),
        }
    total_errors = sum(r["errors_5xx_or_transport"] for r in routes.values())
    non_2xx = sum(n for r in routes.values() for s, n in r["statuses"].items() if not s.startswith("2"))
    return {
        "duration_s": round(elapsed, 1),
        "concurrency": args.concurrency,
        "customers": args.customers,
        "requests": recorder.requests,
        "throughput_rps": round(recorder.requests / elapsed, 1),
        "error_rate": round(total_errors / max(recorder.requests, 1), 6),
        "non_2xx_rate": round(non_2xx / max(recorder.requests, 1), 6),
        "feedback_events_rejected": recorder.feedback_rejected,
        "routes": routes,
        "rss_mb_start": round(samples[0]["rss_mb"], 1),
        "rss_mb_end": round(samples[-1]["rss_mb"], 1),
        "rss_mb_max": round(max(s["rss_mb"] for s in samples), 1),
        "pool_size": samples[-1]["pool_size"],
        "pool_checked_out_max": max((s["checked_out"] or 0) for s in samples),
        "pool_checked_out_mean": round(statistics.mean((s["checked_out"] or 0) for s in samples), 2),
        "pool_overflow_max": max((s["overflow"] or 0) for s in samples),
        "samples": len(samples),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180, help="seconds of load (default 180)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--customers", type=int, default=2000, help="demo customers loaded (default 2000)")
    parser.add_argument("--max-requests", type=int, default=300_000, help="stop after this many requests")
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    # The soak measures the service, not the per-key limiter: one app key carries all the simulated traffic.
    os.environ.setdefault("TIERWISE_RATE_LIMIT_APP_PER_S", "0")
    os.environ.setdefault("TIERWISE_RATE_LIMIT_INTEGRATION_PER_S", "0")
    with scratch_database() as dsn:
        asyncio.run(seed(dsn, args.customers))
        keys = {role: asyncio.run(create_key(dsn, role)) for role in ("app", "integration")}
        with serve(dsn) as base:
            results = asyncio.run(soak(base, keys, args))
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)


if __name__ == "__main__":
    main()
