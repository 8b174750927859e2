"""The soak with two instances and a killed one (issue 20): two `tierwise serve` processes on one scratch database
and one Redis, the soak's mixed workload (bench/soak.py) spread over both, then the instance that leads the
scheduled jobs killed with SIGKILL mid-run and its clients moved to the survivor, as a load balancer would. Checked:

- scheduled jobs run once: one instance leads at a time (tierwise_scheduler_leader), only the leader's job rounds
  happen (tierwise_job_last_success_timestamp_seconds, jobs every minute here), no two rounds of a job in the same
  minute across both, and the survivor takes the lead within the leader interval after the kill;
- invalidation: a key cached by both (5 minutes here) and revoked through one is refused by the other at once, and
  after the kill a key revoked from outside (a third process's transaction) is refused by the survivor at once;
- shared rate limits: one admin key (5/s, burst 20) hit through both instances in turn gets what one bucket allows,
  not two;
- no errors on the survivor (no 5xx, no transport error, nothing logged at ERROR);
- no Postgres left behind: the killed process's sessions are gone from pg_stat_activity within seconds (the server
  sees its sockets close), and none remains on the database after the run.

Usage: python -m bench.soak_instances [--duration 180] [--kill-after 60] [--concurrency 16] [--customers 2000]
"""

import argparse
import asyncio
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import asyncpg
import httpx

from app.core.embedded import to_async_url
from bench.harness import ENCRYPTION_KEY, PEPPER, ROOT, free_port, scratch_database
from bench.soak import Recorder, seed, worker

JOBS = ("expired_idempotency_keys_and_delivered_webhooks_purged", "partitions_maintained")
ADMIN_PER_S, ADMIN_BURST = 5, 20
LEADER_INTERVAL_S = 1.0


async def create_key(dsn: str, role: str, name: str) -> tuple[int, str]:
    from app.apikeys import service
    from app.core.config import Settings
    from app.core.db import create_engine, create_sessionmaker

    engine = create_engine(to_async_url(dsn), Settings(database_url=dsn))
    try:
        async with create_sessionmaker(engine)() as session:
            row, key = await service.create_api_key(session, name, role, PEPPER)
            await session.commit()
            return row.id, key
    finally:
        await engine.dispose()


async def revoke_from_outside(dsn: str, key_id: int) -> None:
    """A revocation by a third process (neither instance): its NOTIFY is all the survivor hears of it."""
    from app.apikeys import service
    from app.core.config import Settings
    from app.core.db import create_engine, create_sessionmaker

    engine = create_engine(to_async_url(dsn), Settings(database_url=dsn))
    try:
        async with create_sessionmaker(engine)() as session:
            await service.revoke_api_key(session, key_id)
            await session.commit()
    finally:
        await engine.dispose()


class Instance:
    """One `tierwise serve` process on a free loopback port, its output in a file."""

    def __init__(self, name: str, dsn: str, env: dict[str, str]) -> None:
        self.name, self.port = name, free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = Path(tempfile.mkstemp(prefix=f"soak-{name}-", suffix=".log")[1])
        tierwise = Path(sys.executable).parent / "tierwise"
        with self.log.open("w") as out:
            self.process = subprocess.Popen(
                [str(tierwise), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env={**os.environ, **env, "TIERWISE_DATABASE_URL": dsn},
                cwd=ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def wait_ready(self) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"instance {self.name} did not start")

    def postgres_ports(self) -> set[int]:
        """The local ports of this process's connections to Postgres (its sessions' client_port)."""
        out = subprocess.run(
            ["ss", "-tnpH", "state", "established", "( dport = :5432 )"], capture_output=True, text=True, check=True
        ).stdout
        return {
            int(line.split()[2].rsplit(":", 1)[1]) for line in out.splitlines() if f"pid={self.process.pid}," in line
        }

    def errors_logged(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if "ERROR" in line or "Traceback" in line]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _gauges(text: str, name: str) -> dict[str, float]:
    """label set -> value of one metric in a /metrics text."""
    return {m.group(1) or "": float(m.group(2)) for m in re.finditer(rf"^{name}(?:{{([^}}]*)}})? (\S+)$", text, re.M)}


async def monitor(instances: list[Instance], stop: asyncio.Event, samples: list[dict]) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        while not stop.is_set():
            for instance in instances:
                if instance.process.poll() is not None:
                    continue
                try:
                    text = (await client.get(instance.base + "/metrics")).text
                except httpx.HTTPError:
                    continue
                jobs = _gauges(text, "tierwise_job_last_success_timestamp_seconds")
                samples.append(
                    {
                        "t": time.time(),
                        "instance": instance.name,
                        "leader": _gauges(text, "tierwise_scheduler_leader").get("", 0.0),
                        "jobs": {job: jobs.get(f'job="{job}"') for job in JOBS},
                    }
                )
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                pass


PROBE = "/v1/customers/C00000001"  # a read an app key may make


async def refused_within(client: httpx.AsyncClient, base: str, key: str, seconds: float) -> float | None:
    """Seconds until `base` answers 401 to the key; None if it still accepts it after `seconds`."""
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        if (await client.get(base + PROBE, headers={"X-API-Key": key})).status_code == 401:
            return round(time.monotonic() - started, 3)
        await asyncio.sleep(0.02)
    return None


async def cached_on(client: httpx.AsyncClient, bases: list[str], key: str) -> bool:
    answers = [await client.get(base + PROBE, headers={"X-API-Key": key}) for base in bases]
    return all(a.status_code == 200 for a in answers)


async def shared_limit(client: httpx.AsyncClient, bases: list[str], key: str, requests: int = 60) -> dict:
    """One admin key's requests through both instances in turn, as fast as they answer: what one bucket lets by."""
    statuses: dict[int, int] = {}
    started = time.monotonic()
    for n in range(requests):
        answer = await client.get(bases[n % 2] + "/v1/api-keys?limit=1", headers={"X-API-Key": key})
        statuses[answer.status_code] = statuses.get(answer.status_code, 0) + 1
    elapsed = time.monotonic() - started
    allowed = statuses.get(200, 0)
    one_bucket = ADMIN_BURST + ADMIN_PER_S * elapsed
    return {
        "requests": requests,
        "statuses": statuses,
        "elapsed_s": round(elapsed, 2),
        "one_bucket_allows": round(one_bucket, 1),
        "two_buckets_would_allow": round(min(requests, 2 * one_bucket), 1),
        "held": allowed <= one_bucket + 2 and statuses.get(429, 0) > 0,
    }


def summary(recorder: Recorder) -> dict:
    errors = sum(n for route in recorder.status.values() for s, n in route.items() if not s.isdigit() or int(s) >= 500)
    statuses: dict[str, int] = {}
    for route in recorder.status.values():
        for status, n in route.items():
            statuses[status] = statuses.get(status, 0) + n
    return {"requests": recorder.requests, "errors_5xx_or_transport": errors, "statuses": statuses}


def rounds(samples: list[dict], instance: str, job: str) -> list[float]:
    """The distinct last-success times of a job seen on an instance: its rounds."""
    return sorted({s["jobs"][job] for s in samples if s["instance"] == instance and s["jobs"][job]})


async def run(dsn: str, instances: list[Instance], keys: dict, args) -> dict:
    bases = [i.base for i in instances]
    samples: list[dict] = []
    stop = asyncio.Event()
    watching = asyncio.create_task(monitor(instances, stop, samples))
    result: dict = {}
    async with httpx.AsyncClient(timeout=10) as client:
        result["rate_limit_shared"] = await shared_limit(client, bases, keys["limited"][1])
        victim_id, victim = keys["victim_before"]
        assert await cached_on(client, bases, victim), "the key is not accepted by both"
        revoked = await client.delete(f"{bases[0]}/v1/api-keys/{victim_id}", headers={"X-API-Key": keys["admin"][1]})
        assert revoked.status_code == 200, revoked.text
        result["revoked_through_one_refused_by_other_s"] = await refused_within(client, bases[1], victim, 5)

    started = time.monotonic()
    kill_at = started + args.kill_after
    end = started + args.duration
    recorders = {i.name: Recorder() for i in instances}
    after = Recorder()  # the killed instance's clients, moved to the survivor
    budget = [args.max_requests]
    # which instance leads decides which one is killed: the leader, so that the lead must move
    while not any(s["leader"] for s in samples):
        await asyncio.sleep(0.2)
    leader = next(s["instance"] for s in reversed(samples) if s["leader"])
    killed = next(i for i in instances if i.name == leader)
    survivor = next(i for i in instances if i is not killed)

    async def kill() -> dict:
        await asyncio.sleep(max(0.0, kill_at - time.monotonic()))
        ports = killed.postgres_ports()
        killed.process.send_signal(signal.SIGKILL)
        killed.process.wait()
        killed_at = time.time()
        conn = await asyncpg.connect(dsn)
        try:
            gone = None
            for _ in range(200):
                left = await conn.fetchval(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND client_port = ANY($1::int[])",
                    list(ports),
                )
                if left == 0:
                    gone = round(time.time() - killed_at, 2)
                    break
                await asyncio.sleep(0.05)
        finally:
            await conn.close()
        return {"killed": killed.name, "killed_at": killed_at, "its_sessions": len(ports), "sessions_gone_s": gone}

    killing = asyncio.create_task(kill())
    workers = []
    for n in range(args.concurrency):
        instance = instances[n % 2]
        rng = random.Random(n)
        if instance is killed:  # until the kill (and a moment after it), then to the survivor
            workers.append(
                worker(
                    killed.base, keys["app_keys"], args.customers, kill_at + 0.5, budget, recorders[killed.name], rng
                )
            )
            workers.append(
                _later(kill_at + 0.5, worker(survivor.base, keys["app_keys"], args.customers, end, budget, after, rng))
            )
        else:
            workers.append(
                worker(instance.base, keys["app_keys"], args.customers, end, budget, recorders[instance.name], rng)
            )
    await asyncio.gather(*workers)
    kill_result = await killing
    async with httpx.AsyncClient(timeout=10) as client:  # the survivor still hears NOTIFYs
        victim_id, victim = keys["victim_after"]
        assert await cached_on(client, [survivor.base], victim)
        await revoke_from_outside(dsn, victim_id)
        result["revoked_outside_refused_by_survivor_s"] = await refused_within(client, survivor.base, victim, 5)
    await asyncio.sleep(2)
    stop.set()
    await watching

    killed_at = kill_result["killed_at"]
    led_after = [s["t"] for s in samples if s["instance"] == survivor.name and s["leader"] and s["t"] > killed_at]
    both_led = {
        round(s["t"]) for s in samples if s["leader"] and s["instance"] == survivor.name and s["t"] < killed_at - 2
    }
    jobs = {}
    for job in JOBS:
        by_instance = {i.name: rounds(samples, i.name, job) for i in instances}
        merged = sorted(t for ts in by_instance.values() for t in ts)
        jobs[job] = {
            "rounds": {name: len(ts) for name, ts in by_instance.items()},
            "survivor_rounds_before_kill": sum(1 for t in by_instance[survivor.name] if t < killed_at),
            "survivor_rounds_after_kill": sum(1 for t in by_instance[survivor.name] if t > killed_at),
            "min_gap_s": round(min((b - a for a, b in zip(merged, merged[1:], strict=False)), default=0), 1),
        }
    survivor_load = summary(recorders[survivor.name])
    moved = summary(after)
    result.update(
        {
            "kill": {k: v for k, v in kill_result.items() if k != "killed_at"},
            "survivor_led_before_kill": bool(both_led),
            "survivor_leads_after_s": round(led_after[0] - killed_at, 2) if led_after else None,
            "jobs": jobs,
            "load": {
                "killed_before_kill": summary(recorders[killed.name]),
                "survivor": survivor_load,
                "moved_to_survivor": moved,
            },
            "survivor_errors_logged": survivor.errors_logged()[:5],
        }
    )
    result["checks"] = {
        "jobs_once": all(
            j["survivor_rounds_before_kill"] == 0 and j["survivor_rounds_after_kill"] >= 1 and j["min_gap_s"] >= 50
            for j in jobs.values()
        )
        and not both_led,
        "leader_taken_over": led_after != [] and led_after[0] - killed_at < LEADER_INTERVAL_S + 5,
        "invalidation": result["revoked_through_one_refused_by_other_s"] is not None
        and result["revoked_outside_refused_by_survivor_s"] is not None,
        "rate_limit_shared": result["rate_limit_shared"]["held"],
        "no_errors_on_survivor": survivor_load["errors_5xx_or_transport"] == 0
        and moved["errors_5xx_or_transport"] == 0
        and not result["survivor_errors_logged"],
        "killed_sessions_gone": kill_result["sessions_gone_s"] is not None,
    }
    return result


async def _later(at: float, coroutine) -> None:
    await asyncio.sleep(max(0.0, at - time.monotonic()))
    await coroutine


async def sessions_left(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
    finally:
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=180, help="seconds of load (default 180)")
    parser.add_argument("--kill-after", type=float, default=60, help="seconds of load before the kill (default 60)")
    parser.add_argument("--concurrency", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--customers", type=int, default=2000, help="demo customers loaded (default 2000)")
    parser.add_argument("--max-requests", type=int, default=300_000, help="stop after this many requests")
    parser.add_argument("--redis-url", default=os.environ.get("TIERWISE_REDIS_URL", "redis://127.0.0.1:6379/0"))
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    env = {
        "TIERWISE_API_KEY_PEPPER": PEPPER,
        "TIERWISE_ENCRYPTION_KEY": ENCRYPTION_KEY,
        "TIERWISE_LOG_LEVEL": "WARNING",
        "TIERWISE_ENVIRONMENT": "production",
        "TIERWISE_RATE_LIMIT_APP_PER_S": "0",  # the load's keys: the service is measured, not the limiter
        "TIERWISE_RATE_LIMIT_INTEGRATION_PER_S": "0",
        "TIERWISE_RATE_LIMIT_ADMIN_PER_S": str(ADMIN_PER_S),
        "TIERWISE_RATE_LIMIT_ADMIN_BURST": str(ADMIN_BURST),
        "TIERWISE_REDIS_URL": args.redis_url,
        "TIERWISE_REDIS_KEY_PREFIX": f"tierwise-soak-{uuid.uuid4().hex[:8]}:",
        "TIERWISE_API_KEY_CACHE_SECONDS": "300",  # a revoked key is refused through the NOTIFY, not by its age
        "TIERWISE_LEADER_INTERVAL_SECONDS": str(LEADER_INTERVAL_S),
        "TIERWISE_PURGE_MINUTES": "1",
        "TIERWISE_PARTITION_MAINTENANCE_MINUTES": "1",
        "TIERWISE_STATS_REFRESH_MINUTES": "0",
        "TIERWISE_OFFER_STATES_REFRESH_MINUTES": "0",
    }
    with scratch_database() as dsn:
        asyncio.run(seed(dsn, args.customers))
        keys = {
            "app_keys": {
                "app": asyncio.run(create_key(dsn, "app", "soak-app"))[1],
                "integration": asyncio.run(create_key(dsn, "integration", "soak-integration"))[1],
            },
            **{name: asyncio.run(create_key(dsn, "admin", f"soak-{name}")) for name in ("admin", "limited")},
            **{name: asyncio.run(create_key(dsn, "app", f"soak-{name}")) for name in ("victim_before", "victim_after")},
        }
        instances = [Instance(name, dsn, env) for name in ("a", "b")]
        try:
            for instance in instances:
                instance.wait_ready()
            results = asyncio.run(run(dsn, instances, keys, args))
        finally:
            for instance in instances:
                instance.stop()
        results["sessions_left_after_stop"] = asyncio.run(sessions_left(dsn))
        results["checks"]["no_sessions_left"] = results["sessions_left_after_stop"] == 0
        for instance in instances:
            instance.log.unlink(missing_ok=True)
    results["passed"] = all(results["checks"].values())
    print(json.dumps(results, indent=2))
    if args.json:
        with open(args.json, "w") as out:
            json.dump(results, out, indent=2)
    sys.exit(0 if results["passed"] else 1)


if __name__ == "__main__":
    main()
