"""Per-key rate limits: a token bucket per API key, sized by role; over it, 429 problem+json with Retry-After,
and other keys are unaffected. Failed authentications: a bucket per client address, which never holds back a
valid key or another address."""

import httpx
import pytest

from app.apikeys import service as apikeys_service
from app.core.config import Settings
from app.core.ratelimit import FailedAuthLimiter, RateLimit, RateLimited, RateLimiter, client_address
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
    assert refused.value.status == 429 and refused.value.headers == {
        "Retry-After": "1",
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "1",
    }
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


def test_each_allowed_request_gets_the_buckets_ratelimit_fields():
    clock = FakeClock()
    limiter = RateLimiter({"app": RateLimit(per_second=2, burst=3)}, clock=clock)

    def fields(headers) -> tuple[int, int, int]:
        values = dict(headers)
        return tuple(int(values[name]) for name in (b"ratelimit-limit", b"ratelimit-remaining", b"ratelimit-reset"))

    assert fields(limiter.check(1, "app")) == (3, 2, 1)  # one token short of full: back in 0.5 s, said as 1
    assert fields(limiter.check(1, "app")) == (3, 1, 1)
    assert fields(limiter.check(1, "app")) == (3, 0, 2)  # three short: full again in 1.5 s
    clock.now += 0.5
    assert fields(limiter.check(1, "app")) == (3, 0, 2)  # the token back is taken at once
    assert fields(limiter.check(2, "app")) == (3, 2, 1)  # another key, its own bucket
    assert limiter.check(3, "integration") is None  # a role without a limit says nothing


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


async def test_a_key_over_its_limit_gets_429_with_retry_after_and_other_keys_do_not(
    sessionmaker, session, test_settings
):
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
        assert refused.headers["RateLimit-Limit"] == "3" and refused.headers["RateLimit-Remaining"] == "0"
        assert refused.headers["RateLimit-Reset"] == refused.headers["Retry-After"]
        hot = await client.get("/v1/customers/NOBODY/tiers", headers={"X-API-Key": noisy})  # the hot path too
        assert hot.status_code == 429 and hot.headers["RateLimit-Remaining"] == "0"
        assert refused.json()["type"].endswith("/rate-limited")
        assert (await client.get("/v1/products", headers={"X-API-Key": quiet})).status_code == 200
        assert (await client.get("/v1/products", headers={"X-API-Key": admin})).status_code == 200
        # An unknown key is refused as unknown (401), never counted against anyone's bucket.
        assert (await client.get("/v1/products", headers={"X-API-Key": "tw_000000000000_x"})).status_code == 401


RATELIMIT_FIELDS = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")


async def test_every_answer_to_a_known_key_carries_its_ratelimit_headers_routed_or_hot(
    sessionmaker, session, test_settings
):
    """Not only the 429: a 200 (routed and hot), a 404, a 403 and a write say how much of the key's bucket is left,
    counting down; an unknown key (401) has no bucket to tell of."""
    settings = test_settings.model_copy(update={"rate_limit_app_per_s": 0.01, "rate_limit_app_burst": 6})
    app = create_app(settings, sessionmaker=sessionmaker)
    _, key = await apikeys_service.create_api_key(session, "counted-app", "app", settings.api_key_pepper)
    await session.commit()
    app_key = {"X-API-Key": key}
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://tierwise.test") as client:
        answers = [
            await client.get("/v1/products", headers=app_key),  # routed 200
            await client.get("/v1/customers/NOBODY/tiers", headers=app_key),  # the hot path's 404
            await client.get("/v1/customers/NOBODY/tiers", headers={**app_key, "Accept-Language": "en"}),
            await client.get("/v1/audit", headers=app_key),  # 403: the key is known, its role lacks the scope
            await client.post("/v1/feedback/events", headers=app_key, json={"events": []}),  # a write
            await client.get("/v1/products/no_such_product", headers=app_key),  # routed 404
        ]
        assert [a.status_code for a in answers][:4] == [200, 404, 404, 403], [a.text for a in answers]
        for n, answer in enumerate(answers, start=1):
            assert answer.headers["RateLimit-Limit"] == "6", (n, answer.status_code)
            assert int(answer.headers["RateLimit-Remaining"]) == 6 - n, (n, answer.status_code)
            assert 100 * (n - 1) < int(answer.headers["RateLimit-Reset"]) <= 100 * n  # 0.01 per second
            assert "Retry-After" not in answer.headers
        refused = await client.get("/v1/products", headers=app_key)
        assert refused.status_code == 429 and refused.headers["RateLimit-Remaining"] == "0"
        assert refused.headers.get_list("RateLimit-Limit") == ["6"]  # its own fields, not twice
        unknown = await client.get("/v1/products", headers={"X-API-Key": "tw_000000000000_x"})
        assert unknown.status_code == 401 and not set(RATELIMIT_FIELDS) & set(unknown.headers)


def test_the_spec_documents_the_ratelimit_headers_on_every_answer_of_an_operation_with_a_key(app):
    spec = app.openapi()
    checked = 0
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                headers = set(response.get("headers", {}))
                if not operation.get("security"):
                    assert not set(RATELIMIT_FIELDS) & headers, (method, path, status)
                elif status[0] in "23" or status in ("403", "404", "409", "412", "429"):
                    assert set(RATELIMIT_FIELDS) <= headers, (method, path, status)
                    checked += 1
    assert checked > 200


def _scope(peer: str, forwarded: str | None = None) -> dict:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"type": "http", "client": (peer, 50000), "headers": headers}


def test_the_client_address_is_the_peer_unless_the_peer_is_a_trusted_proxy():
    proxies = Settings(environment="test", trusted_proxies="10.0.0.0/8").trusted_proxies
    assert client_address(_scope("203.0.113.7", "198.51.100.1")) == "203.0.113.7"  # no proxy trusted: ignored
    assert client_address(_scope("203.0.113.7", "198.51.100.1"), proxies) == "203.0.113.7"  # not from a proxy
    # From a trusted proxy: the right-most address it did not add itself; what the client wrote is ignored.
    assert client_address(_scope("10.0.0.5", "6.6.6.6, 198.51.100.1"), proxies) == "198.51.100.1"
    assert client_address(_scope("10.0.0.5", "198.51.100.1, 10.0.0.9"), proxies) == "198.51.100.1"
    assert client_address(_scope("10.0.0.5"), proxies) == "10.0.0.5"
    # An IPv6 host stands for its /64.
    assert client_address(_scope("2001:db8:1:2:aaaa::1")) == client_address(_scope("2001:db8:1:2:bbbb::9"))
    assert client_address(_scope("2001:db8:1:2::1")) != client_address(_scope("2001:db8:1:3::1"))


def test_failed_authentications_are_limited_per_address_with_retry_after():
    clock = FakeClock()
    limiter = FailedAuthLimiter(RateLimit(per_second=0.2, burst=3), clock=clock)
    for _ in range(3):
        limiter.failed("198.51.100.1")
    with pytest.raises(RateLimited) as refused:
        limiter.failed("198.51.100.1")
    assert refused.value.headers == {
        "Retry-After": "5",
        "RateLimit-Limit": "3",
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": "5",
    }
    limiter.failed("198.51.100.2")  # another address has its own budget
    clock.now += 5  # one failure's worth back
    limiter.failed("198.51.100.1")
    with pytest.raises(RateLimited):
        limiter.failed("198.51.100.1")


def test_the_failure_buckets_forget_recovered_addresses_first():
    clock = FakeClock()
    limiter = FailedAuthLimiter(RateLimit(per_second=1, burst=2), clock=clock, max_addresses=3)
    for address in ("a", "b", "c"):
        limiter.failed(address)
    clock.now += 10  # all of them recovered
    limiter.failed("d")
    assert set(limiter.buckets) == {"d"}


async def test_guessed_keys_get_429_after_the_budget_and_a_valid_key_or_another_address_still_get_through(
    sessionmaker, session, test_settings
):
    settings = test_settings.model_copy(update={"auth_failures_burst": 20, "auth_failures_per_s": 0.2})
    app = create_app(settings, sessionmaker=sessionmaker)
    _, valid = await apikeys_service.create_api_key(session, "valid-app", "app", settings.api_key_pepper)
    await session.commit()

    def client_from(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(address, 40000))
        return httpx.AsyncClient(transport=transport, base_url="http://tierwise.test")

    async with client_from("198.51.100.1") as guesser, client_from("198.51.100.2") as other:
        statuses = []
        for i in range(60):  # through the router and through the hot reads alike
            path = "/v1/products" if i % 2 else "/v1/customers/G1/tiers"
            guess = f"tw_{i:012x}_{'x' * 43}" if i % 3 else "not-even-a-key"
            statuses.append((await guesser.get(path, headers={"X-API-Key": guess})).status_code)
        assert statuses[:20] == [401] * 20 and set(statuses[20:]) == {429}
        refused = await guesser.get("/v1/products", headers={"X-API-Key": "tw_000000000000_x"})
        assert refused.headers["content-type"] == "application/problem+json"
        assert 1 <= int(refused.headers["retry-after"]) <= 5  # one failure's worth comes back every 5 s
        assert (await guesser.get("/v1/products", headers={"X-API-Key": valid})).status_code == 200
        assert (await other.get("/v1/products", headers={"X-API-Key": "tw_000000000000_x"})).status_code == 401
        assert (await guesser.get("/v1/products")).status_code == 401  # no key at all is not a guess
