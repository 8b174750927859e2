"""The API keys' rate limits shared by every worker process and instance: the same token buckets as
app.core.ratelimit.RateLimiter (a bucket of `burst` tokens per key, refilled at `per_second`), kept in Redis
(TIERWISE_REDIS_URL) and taken atomically by one Lua script on Redis's own clock, so instances whose clocks differ
share one bucket exactly. The answers carry the same RateLimit-* headers and the same 429.

When Redis cannot be reached (refused, timed out past TIERWISE_REDIS_TIMEOUT_S, an error), the request is limited
by this process's own buckets instead (fail open: the service keeps serving, each instance at most at the
configured rate), counted in tierwise_rate_limit_store_errors_total and logged once per outage; Redis is tried
again after `retry_seconds`. A bucket untouched for as long as it takes to fill up expires from Redis.
"""

import logging
import time

import redis.asyncio as redis
from prometheus_client import Counter
from redis.exceptions import RedisError

from app.core.ratelimit import RateLimit, RateLimiter, answer

log = logging.getLogger(__name__)

STORE_ERRORS = Counter(
    "tierwise_rate_limit_store_errors_total",
    "Rate-limit checks that could not reach the shared store (Redis) and were limited per process instead",
)

# KEYS[1]: the bucket; ARGV: per_second, burst. Returns {1 allowed or 0 refused, tokens left (after the take)}.
TAKE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1])
local at = tonumber(bucket[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
end
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return {allowed, tostring(tokens)}
"""


class SharedRateLimiter:
    """Token buckets keyed by API key id, in Redis; this process's RateLimiter while Redis is unreachable."""

    def __init__(
        self,
        limits: dict[str, RateLimit],
        url: str,
        timeout: float = 0.25,
        prefix: str = "tierwise:ratelimit:",
        retry_seconds: float = 5.0,
        clock=time.monotonic,
    ) -> None:
        self.limits, self.prefix, self.retry_seconds, self.clock = limits, prefix, retry_seconds, clock
        self.local = RateLimiter(limits, clock)
        self.redis = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        self.take = self.redis.register_script(TAKE)
        self.unreachable_until: float | None = None  # while set, this process limits on its own

    async def acquire(self, key_id: int, role: str) -> list[tuple[bytes, bytes]] | None:
        """Take one token from the key's shared bucket: its RateLimit headers, or 429 (see RateLimiter.check)."""
        limit = self.limits.get(role)
        if limit is None or limit.per_second <= 0:
            return None
        if self.unreachable_until is not None and self.clock() < self.unreachable_until:
            STORE_ERRORS.inc()
            return self.local.check(key_id, role)
        try:
            allowed, tokens = await self.take(keys=[f"{self.prefix}{key_id}"], args=[limit.per_second, limit.burst])
        except (RedisError, OSError, TimeoutError) as exc:
            STORE_ERRORS.inc()
            if self.unreachable_until is None:
                log.warning("rate-limit store unreachable: limiting per process", extra={"reason": type(exc).__name__})
            self.unreachable_until = self.clock() + self.retry_seconds
            return self.local.check(key_id, role)
        if self.unreachable_until is not None:
            log.info("rate-limit store reachable again: limits shared")
            self.unreachable_until = None
        return answer(limit, role, bool(allowed), float(tokens))

    async def close(self) -> None:
        await self.redis.aclose()


def rate_limiter(limits: dict[str, RateLimit], settings) -> RateLimiter | SharedRateLimiter:
    """The app's limiter: shared through Redis when TIERWISE_REDIS_URL is set, this process's own otherwise."""
    if settings.redis_url:
        return SharedRateLimiter(limits, settings.redis_url, settings.redis_timeout_s, settings.redis_key_prefix)
    return RateLimiter(limits)
