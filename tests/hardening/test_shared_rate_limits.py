"""Rate limits shared by instances through Redis (app/core/shared_ratelimit.py), against the real Redis of this
machine (127.0.0.1:6379; skipped when none listens): one bucket for every instance, taken atomically, refilled at
the rate, the same RateLimit headers and 429; and, with Redis unreachable, each instance limiting on its own, counted
and logged without the key. Every test keys its buckets under a prefix of its own."""

import asyncio
import logging
import socket
import uuid

import httpx
import pytest
from sqlalchemy import text

from app.apikeys import service as apikeys_service
from app.core.db import create_sessionmaker
from app.core.metrics import registry
from app.core.ratelimit import RateLimit, RateLimited
from app.core.shared_ratelimit import SharedRateLimiter
from app.main import create_app

REDIS = "redis://127.0.0.1:6379/0"


def _redis_listens() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=0.5).close()
        return True
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not _redis_listens(), reason="no Redis on 127.0.0.1:6379 to share limits through")


def _prefix() -> str:
    return f"tierwise-test:{uuid.uuid4().hex}:"


async def _outcomes(limiter: SharedRateLimiter, key_id: int, role: str = "app") -> dict | RateLimited:
    try:
        return {name.decode(): int(value) for name, value in await limiter.acquire(key_id, role)}
    except RateLimited as refused:
        return refused


async def test_two_instances_share_one_bucket_and_its_headers():
    limits = {"app": RateLimit(per_second=0.01, burst=4)}
    prefix = _prefix()
    first, second = SharedRateLimiter(limits, REDIS, prefix=prefix), SharedRateLimiter(limits, REDIS, prefix=prefix)
    try:
        remaining = [(await _outcomes(limiter, 7))["ratelimit-remaining"] for limiter in (first, second, first, second)]
        assert remaining == [3, 2, 1, 0]
        refused = await _outcomes(first, 7)
        assert isinstance(refused, RateLimited) and refused.status == 429
        assert refused.headers["RateLimit-Remaining"] == "0" and refused.headers["RateLimit-Limit"] == "4"
        assert int(refused.headers["Retry-After"]) >= 90  # one token at 0.01/s: about 100 s
        assert isinstance(await _outcomes(second, 7), RateLimited)
        assert (await _outcomes(second, 8))["ratelimit-remaining"] == 3  # another key, its own bucket
        assert await first.acquire(7, "admin") is None  # a role without a limit here
    finally:
        await first.close()
        await second.close()


async def test_concurrent_takes_from_two_instances_never_exceed_the_burst():
    limits = {"app": RateLimit(per_second=0.001, burst=25)}
    prefix = _prefix()
    # 80 takes at once on a loaded machine may wait past the 0.25 s default for Redis, and then each limiter falls
    # back to its own bucket (tested below): this test is about the shared bucket, so it waits longer
    limiters = [SharedRateLimiter(limits, REDIS, prefix=prefix, timeout=5.0) for _ in range(2)]
    try:
        results = await asyncio.gather(*(_outcomes(limiters[n % 2], 1) for n in range(80)))
        assert sum(not isinstance(result, RateLimited) for result in results) == 25
    finally:
        for limiter in limiters:
            await limiter.close()


async def test_the_shared_bucket_refills_at_the_rate():
    limits = {"app": RateLimit(per_second=20, burst=2)}
    limiter = SharedRateLimiter(limits, REDIS, prefix=_prefix())
    try:
        assert not isinstance(await _outcomes(limiter, 1), RateLimited)
        assert not isinstance(await _outcomes(limiter, 1), RateLimited)
        assert isinstance(await _outcomes(limiter, 1), RateLimited)
        await asyncio.sleep(0.12)  # 2.4 tokens' worth, capped at the burst
        assert not isinstance(await _outcomes(limiter, 1), RateLimited)
    finally:
        await limiter.close()


def _store_errors() -> float:
    return registry().get_sample_value("tierwise_rate_limit_store_errors_total") or 0.0


async def test_with_redis_unreachable_each_instance_limits_on_its_own_counted_and_logged(caplog):
    limits = {"app": RateLimit(per_second=0.01, burst=3)}
    limiter = SharedRateLimiter(limits, "redis://127.0.0.1:1/0", timeout=0.2, prefix=_prefix())  # nothing listens
    before = _store_errors()
    try:
        with caplog.at_level(logging.INFO, logger="app.core.shared_ratelimit"):
            remaining = [(await _outcomes(limiter, 424242))["ratelimit-remaining"] for _ in range(3)]
            refused = await _outcomes(limiter, 424242)
        assert remaining == [2, 1, 0] and isinstance(refused, RateLimited)
        assert _store_errors() - before == 4
        warnings = [record for record in caplog.records if record.levelno == logging.WARNING]
        assert len(warnings) == 1  # once per outage, not per request
        assert "424242" not in caplog.text  # nothing of the caller
    finally:
        await limiter.close()


async def test_two_apps_with_redis_share_a_keys_limit(engine, database_url, test_settings):
    """Two instances of the app (their own engines), TIERWISE_REDIS_URL set: requests with one key through both
    are allowed up to the role's burst in all, then 429."""
    tag = uuid.uuid4().hex[:8]
    async with create_sessionmaker(engine)() as session:
        _, key = await apikeys_service.create_api_key(session, f"rl-{tag}", "admin", test_settings.api_key_pepper)
        await session.commit()
    settings = test_settings.model_copy(
        update={
            "database_url": database_url,
            "redis_url": REDIS,
            "redis_key_prefix": _prefix(),
            "rate_limit_admin_per_s": 0.01,
            "rate_limit_admin_burst": 6,
            "webhook_worker": False,
            "retier_worker": False,
        }
    )
    apps = [create_app(settings), create_app(settings)]
    try:
        async with apps[0].router.lifespan_context(apps[0]), apps[1].router.lifespan_context(apps[1]):
            clients = [
                httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tierwise.test")
                for app in apps
            ]
            async with clients[0], clients[1]:
                statuses = [
                    (await clients[n % 2].get("/v1/api-keys?limit=1", headers={"X-API-Key": key})).status_code
                    for n in range(9)
                ]
    finally:  # the key was committed: other tests list the keys
        async with create_sessionmaker(engine)() as session:
            await session.execute(text("DELETE FROM api_key WHERE name = :name"), {"name": f"rl-{tag}"})
            await session.commit()
    assert statuses == [200] * 6 + [429] * 3
