"""/metrics after real actions: both connection pools (waits, timeouts, use), recommendation lists served, feedback
by outcome, tier transitions (counted on commit only), tier-run durations, scheduled jobs' last success and 429s by
role; and, against a live `tierwise serve --workers 2`, figures summed over the worker processes."""

import asyncio
import time
import types

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from app.core.db import create_engine, create_read_pool, read_connection
from app.core.errors import ServiceUnavailable
from app.core.schedule import run_every
from app.main import create_app
from app.tiering import runs
from app.tiering.assignment.refresh import refresh_tiers
from tests.feedback.helpers import event, serve_items
from tests.hardening.live_server import live_server
from tests.tiering.test_assignment import make_customer


def _samples(exposition: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


class Scrape:
    """Figures read from /metrics; `moved(name, **labels)` is the change since the previous read."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client, self.before, self.now = client, {}, {}

    async def read(self) -> "Scrape":
        response = await self.client.get("/metrics")
        assert response.status_code == 200
        self.before, self.now = self.now, _samples(response.text)
        return self

    def value(self, name: str, **labels) -> float:
        return self.now.get((name, frozenset(labels.items())), 0.0)

    def moved(self, name: str, **labels) -> float:
        key = (name, frozenset(labels.items()))
        return self.now.get(key, 0.0) - self.before.get(key, 0.0)


async def test_business_counters_move_with_what_the_service_does(client, as_role, wealth, session, sessionmaker):
    scrape = await Scrape(client).read()
    await make_customer(client, as_role, "M1", "60000.00")  # first assignment (mass), then gold
    served = await client.get("/v1/customers/M1/recommendations", headers=as_role("app"))
    assert served.status_code == 200, served.text
    [fund] = await serve_items(session, "M1", ["balanced_fund"])
    await session.commit()
    feedback = [
        event("m-1", fund, "M1", "impression"),
        event("m-1", fund, "M1", "impression"),  # the same event twice: a duplicate
        event("m-2", "00000000-0000-0000-0000-000000000001", "M1", "click"),  # no such recommendation: rejected
    ]
    answered = await client.post("/v1/feedback/events", json={"events": feedback}, headers=as_role("app"))
    assert answered.status_code == 200, answered.text
    await scrape.read()
    assert scrape.moved("tierwise_tier_transitions_total", direction="initial") == 1
    assert scrape.moved("tierwise_tier_transitions_total", direction="upgrade") == 1
    assert scrape.moved("tierwise_recommendation_lists_served_total", channel="mobile") == 1
    assert scrape.moved("tierwise_feedback_events_total", outcome="accepted") == 1
    assert scrape.moved("tierwise_feedback_events_total", outcome="duplicate") == 1
    assert scrape.moved("tierwise_feedback_events_total", outcome="rejected") == 1

    # A tier run: its duration observed, its transitions counted when each chunk commits.
    await session.execute(text("UPDATE customer_aum_daily SET aum = aum * 20"))
    await session.commit()
    async with sessionmaker() as s:
        run = await runs.start_run(s, None, "cron")
        await s.commit()
    await runs.execute_run(sessionmaker, run.id)
    await scrape.read()
    assert scrape.moved("tierwise_tier_run_duration_seconds_count", status="succeeded") == 1
    assert scrape.moved("tierwise_tier_transitions_total", direction="upgrade") == 1  # gold -> wealth


async def test_transitions_count_when_the_write_commits_not_when_it_rolls_back(
    client, as_role, wealth, session, sessionmaker
):
    await make_customer(client, as_role, "M2", "60000.00")  # gold
    customer_id = await session.scalar(text("SELECT id FROM customer WHERE external_id = 'M2'"))
    await session.execute(text("UPDATE customer_aum_daily SET aum = aum * 20"))  # qualifies for wealth now
    await session.commit()
    scrape = await Scrape(client).read()
    async with sessionmaker() as write:
        counts = await refresh_tiers(write, [customer_id], id_range=None)
        assert counts.upgrades == 1
        await write.rollback()
    await scrape.read()
    assert scrape.moved("tierwise_tier_transitions_total", direction="upgrade") == 0
    async with sessionmaker() as write:
        await refresh_tiers(write, [customer_id], id_range=None)
        await write.commit()
    await scrape.read()
    assert scrape.moved("tierwise_tier_transitions_total", direction="upgrade") == 1


async def test_429s_are_counted_by_role(test_settings, sessionmaker, keys):
    limited = create_app(
        test_settings.model_copy(update={"rate_limit_app_per_s": 0.001, "rate_limit_app_burst": 1}),
        sessionmaker=sessionmaker,
    )
    transport = httpx.ASGITransport(app=limited, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise.test") as client:
        scrape = await Scrape(client).read()
        statuses = [
            (await client.get("/v1/products", headers={"X-API-Key": keys["app"]})).status_code for _ in range(3)
        ]
        assert statuses == [200, 429, 429]
        await scrape.read()
    assert scrape.moved("tierwise_rate_limited_total", role="app") == 2
    assert scrape.moved("tierwise_rate_limited_total", role="admin") == 0


async def test_a_scheduled_job_s_last_success_is_its_time(client):
    rounds = asyncio.Event()

    async def job() -> dict:
        rounds.set()
        return {"done": 1}

    before = await Scrape(client).read()
    task = asyncio.create_task(run_every(0.0001, job, "test job ran"))  # minutes: every 6 ms
    try:
        await asyncio.wait_for(rounds.wait(), 10)
        for _ in range(100):  # the gauge is set right after the round returns
            scrape = await Scrape(client).read()
            if scrape.value("tierwise_job_last_success_timestamp_seconds", job="test_job_ran"):
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    stamp = scrape.value("tierwise_job_last_success_timestamp_seconds", job="test_job_ran")
    assert stamp > before.value("tierwise_job_last_success_timestamp_seconds", job="test_job_ran")
    assert abs(stamp - time.time()) < 60  # a Unix time


async def test_pool_waits_and_timeouts_of_both_pools(client, database_url, test_settings):
    settings = test_settings.model_copy(
        update={"db_pool_size": 1, "db_max_overflow": 0, "db_pool_timeout_s": 0.2, "read_pool_size": 1}
    )
    engine = create_engine(database_url, settings)
    scrape = await Scrape(client).read()
    try:
        async with engine.connect() as held:
            await held.execute(text("SELECT 1"))
            during = await Scrape(client).read()
            assert during.value("tierwise_db_pool_checked_out", pool="engine") >= 1
            with pytest.raises(Exception) as refused:
                async with engine.connect() as second:
                    await second.execute(text("SELECT 1"))
            assert type(refused.value).__name__ == "TimeoutError"
        read_pool = await create_read_pool(engine, settings)
        state = types.SimpleNamespace(read_pool=read_pool, settings=settings)
        try:
            async with read_connection(state) as first:
                await first.fetchval("SELECT 1")
                with pytest.raises(ServiceUnavailable):
                    async with read_connection(state):
                        pass
        finally:
            await read_pool.close()
    finally:
        await engine.dispose()
    await scrape.read()
    for pool in ("engine", "read"):
        assert scrape.moved("tierwise_db_pool_timeouts_total", pool=pool) == 1
        assert scrape.moved("tierwise_db_pool_wait_seconds_count", pool=pool) >= 2
        assert scrape.moved("tierwise_db_pool_wait_seconds_sum", pool=pool) >= 0.2  # the timed-out wait
    assert scrape.value("tierwise_db_pool_checked_out", pool="read") == 0


async def test_a_server_with_two_workers_reports_the_sum_of_both(scratch_database, tmp_path):
    async with live_server(scratch_database(), tmp_path, serve_args=("--workers", "2")) as server:
        async with httpx.AsyncClient(base_url=server.base, timeout=10) as warm:
            start = _samples((await warm.get("/metrics")).text)
        key = (
            "tierwise_http_requests_total",
            frozenset({"method": "GET", "route": "/healthz", "status": "200"}.items()),
        )
        served_before = start.get(key, 0.0)
        requests = 40

        async def one() -> None:  # a connection each: the kernel hands them to both workers
            async with httpx.AsyncClient(base_url=server.base, timeout=10) as fresh:
                assert (await fresh.get("/healthz")).status_code == 200

        await asyncio.gather(*(one() for _ in range(requests)))
        pool_key = ("tierwise_db_pool_size", frozenset({"pool": "engine"}.items()))

        async def scrapes() -> list[tuple[float, float]]:
            answers = []
            for _ in range(6):  # a connection each: either worker answers
                async with httpx.AsyncClient(base_url=server.base, timeout=10) as fresh:
                    samples = _samples((await fresh.get("/metrics")).text)
                answers.append((samples.get(key, 0.0) - served_before, samples.get(pool_key, 0.0)))
            return answers

        # A request is counted right after its response is sent, and the second worker may still be starting:
        # read until the figures settle (bounded), then every answer must agree.
        deadline = time.monotonic() + 30
        answers = await scrapes()
        while set(answers) != {(requests, 64.0)} and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            answers = await scrapes()
        # Whichever worker answers, it reports every request both served, and both pools of 32 (the default).
        assert set(answers) == {(requests, 64.0)}

        # One of the two workers leads the scheduled jobs (app/core/leader.py): the summed gauge is 1, not 2.
        leading = ("tierwise_scheduler_leader", frozenset())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            async with httpx.AsyncClient(base_url=server.base, timeout=10) as fresh:
                leaders = _samples((await fresh.get("/metrics")).text).get(leading)
            if leaders == 1.0:
                break
            await asyncio.sleep(0.2)
        assert leaders == 1.0
        await asyncio.sleep(1.0)  # and stays 1 while the other keeps trying
        async with httpx.AsyncClient(base_url=server.base, timeout=10) as fresh:
            assert _samples((await fresh.get("/metrics")).text).get(leading) == 1.0
