"""Per-key rate limits: a token bucket per API key, sized by role; over it, 429 problem+json with Retry-After,
and other keys are unaffected."""

import httpx
import pytest

from app.apikeys import service as apikeys_service
from app.core.config import Settings
from app.core.ratelimit import RateLimit, RateLimited, RateLimiter
from app.main import create_app


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_a_burst_then_the_sustained_rate():
    clock = FakeClock()
    limiter = RateLimiter({"app": RateLimit(per_second=2, burst=3)}, clock=clock)
    for _ in range(3):
        limiter.check(1, "app")
    with pytest.raises(RateLimited) as refused:
        limiter.check(1, "app")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    limiter.check(2, "app")  # another key has its own bucket
    clock.now += 0.5  # one token back at 2 per second
    limiter.check(1, "app")
    with pytest.raises(RateLimited):
        limiter.check(1, "app")
    clock.now += 60  # a quiet minute refills to the burst, not beyond
    for _ in range(3):
        limiter.check(1, "app")
    with pytest.raises(RateLimited):
        limiter.check(1, "app")


def test_retry_after_is_the_wait_for_the_next_token_in_whole_seconds():
    limiter = RateLimiter({"admin": RateLimit(per_second=0.1, burst=1)}, clock=FakeClock())
    limiter.check(1, "admin")
    with pytest.raises(RateLimited) as refused:
        limiter.check(1, "admin")
    assert refused.value.headers["Retry-After"] == "10"


def test_zero_rate_means_unlimited():
    limiter = RateLimiter({"integration": RateLimit(per_second=0, burst=1)}, clock=FakeClock())
    for _ in range(1000):
        limiter.check(1, "integration")


def test_limits_are_configured_per_role_from_the_environment(monkeypatch):
    monkeypatch.setenv("TIERWISE_RATE_LIMIT_APP_PER_S", "5")
    monkeypatch.setenv("TIERWISE_RATE_LIMIT_APP_BURST", "7")
    settings = Settings(environment="test")
    assert (settings.rate_limit_app_per_s, settings.rate_limit_app_burst) == (5, 7)
    limiter = create_app(settings).state.rate_limiter
    assert limiter.limits["app"] == RateLimit(5, 7)
    assert limiter.limits["admin"] == RateLimit(settings.rate_limit_admin_per_s, settings.rate_limit_admin_burst)


async def test_a_key_over_its_limit_gets_429_with_retry_after_and_other_keys_do_not(sessionmaker, session,
                                                                                    test_settings):
    settings = test_settings.model_copy(update={"rate_limit_app_per_s": 0.01, "rate_limit_app_burst": 3})
    app = create_app(settings, sessionmaker=sessionmaker)
    _, noisy = await apikeys_service.create_api_key(session, "noisy-app", "app", settings.api_key_pepper)
    _, quiet = await apikeys_service.create_api_key(session, "quiet-app", "app", settings.api_key_pepper)
    _, admin = await apikeys_service.create_api_key(session, "admin", "admin", settings.api_key_pepper)
    await session.commit()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise.test") as client:
        statuses = [(await client.get("/v1/products", headers={"X-API-Key": noisy})).status_code for _ in range(3)]
        assert statuses == [200, 200, 200]
        refused = await client.get("/v1/products", headers={"X-API-Key": noisy})
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["type"].endswith("/rate-limited")
        assert (await client.get("/v1/products", headers={"X-API-Key": quiet})).status_code == 200
        assert (await client.get("/v1/products", headers={"X-API-Key": admin})).status_code == 200
        # An unknown key is refused as unknown (401), never counted against anyone's bucket.
        assert (await client.get("/v1/products", headers={"X-API-Key": "tw_000000000000_x"})).status_code == 401
