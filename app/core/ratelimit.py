"""Rate limits: a token bucket per API key, sized by the key's role, checked right after authentication; and one
per client address for failed authentications (FailedAuthLimiter).

The buckets live in the process: each instance enforces the limit on its own, so behind a load balancer with N
instances (or N worker processes) a key may reach up to N times its configured rate. With TIERWISE_REDIS_URL set,
the keys' buckets live in Redis instead, shared by every process and instance (app.core.shared_ratelimit), and in
the process again while Redis cannot be reached. Failed authentications are counted per process in either case.
"""

import ipaddress
import math
import time
from dataclasses import dataclass

from app.core.config import Settings
from app.core.errors import AppError
from app.core.metrics import RATE_LIMITED


class RateLimited(AppError):
    status, title, slug = 429, "Too many requests", "rate-limited"


def limited_headers(burst: int, retry_after: int) -> dict[str, str]:
    """A 429's headers: Retry-After, and beside it the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers):
    the bucket's size, none left, and the seconds until one request is allowed again."""
    return {
        "Retry-After": str(retry_after),
        "RateLimit-Limit": str(burst),
        "RateLimit-Remaining": "0",
        "RateLimit-Reset": str(retry_after),
    }


def allowed_headers(burst: int, remaining: int, reset: int) -> list[tuple[bytes, bytes]]:
    """The same IETF RateLimit fields on every other answer of a rate-limited route (raw ASGI headers, added by
    app.core.middleware.RequestContextMiddleware): the bucket's size, the requests left in it now and the seconds
    until it is full again."""
    return [
        (b"ratelimit-limit", str(burst).encode()),
        (b"ratelimit-remaining", str(remaining).encode()),
        (b"ratelimit-reset", str(reset).encode()),
    ]


@dataclass(frozen=True, slots=True)
class RateLimit:
    per_second: float  # sustained rate; 0 means unlimited
    burst: int  # bucket size: requests allowed at once after a quiet spell


def role_limits(settings: Settings) -> dict[str, RateLimit]:
    return {
        "app": RateLimit(settings.rate_limit_app_per_s, settings.rate_limit_app_burst),
        "integration": RateLimit(settings.rate_limit_integration_per_s, settings.rate_limit_integration_burst),
        "admin": RateLimit(settings.rate_limit_admin_per_s, settings.rate_limit_admin_burst),
    }


class RateLimiter:
    """Token buckets keyed by API key id. Not shared between processes (see the module note)."""

    def __init__(self, limits: dict[str, RateLimit], clock=time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.buckets: dict[int, tuple[float, float]] = {}  # key id -> (tokens, at)

    def check(self, key_id: int, role: str) -> list[tuple[bytes, bytes]] | None:
        """Take one token from the key's bucket and return the RateLimit headers of the answer (`allowed_headers`:
        requests left, seconds until the bucket is full); or raise 429 with Retry-After (whole seconds until one is
        back). None when the role is not limited.

        No await inside: under asyncio the read-modify-write of a bucket cannot interleave."""
        limit = self.limits.get(role)
        if limit is None or limit.per_second <= 0:
            return None
        now = self.clock()
        tokens, at = self.buckets.get(key_id, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - at) * limit.per_second)
        allowed = tokens >= 1.0
        if allowed:
            tokens -= 1.0
        self.buckets[key_id] = (tokens, now)
        return answer(limit, role, allowed, tokens)

    async def acquire(self, key_id: int, role: str) -> list[tuple[bytes, bytes]] | None:
        """`check`, as the shared limiter's (app.core.shared_ratelimit) is called."""
        return self.check(key_id, role)

    async def close(self) -> None:
        """Nothing to release (the shared limiter closes its Redis connections)."""


def answer(limit: RateLimit, role: str, allowed: bool, tokens: float) -> list[tuple[bytes, bytes]]:
    """The outcome of taking a token from a bucket that holds `tokens` after the take (before it when refused): the
    RateLimit headers of an allowed request, or 429 with Retry-After (whole seconds until one is back)."""
    if not allowed:
        RATE_LIMITED.labels(role).inc()
        retry_after = max(1, math.ceil((1.0 - tokens) / limit.per_second))
        raise RateLimited(
            f"This API key (role {role}) is limited to {limit.per_second:g} requests per second "
            f"with bursts of {limit.burst}; retry in {retry_after} s.",
            headers=limited_headers(limit.burst, retry_after),
        )
    return allowed_headers(limit.burst, int(tokens), math.ceil((limit.burst - tokens) / limit.per_second))


def client_address(scope, trusted_proxies=()) -> str:
    """The address a request comes from, as failed authentication is counted per address: the connection's peer;
    when that peer is one of `trusted_proxies` (TIERWISE_TRUSTED_PROXIES, none by default), the right-most
    X-Forwarded-For address that is not itself a trusted proxy (the one the proxy saw). Anything else a client
    writes into X-Forwarded-For is ignored. An IPv6 address stands for its /64 (one host's usual allocation)."""
    peer = (scope.get("client") or ("unknown", 0))[0]
    address = _ip(peer)
    if address is not None and trusted_proxies and _trusted(address, trusted_proxies):
        forwarded = b",".join(value for name, value in scope.get("headers", ()) if name == b"x-forwarded-for")
        for hop in reversed(forwarded.decode("latin-1").split(",")):
            hop_address = _ip(hop.strip())
            if hop_address is None:
                break  # not an address: the proxy did not write it
            address = hop_address
            if not _trusted(hop_address, trusted_proxies):
                break
    if address is None:
        return peer
    if address.version == 6:
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def _ip(text: str):
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def _trusted(address, networks) -> bool:
    return any(address in network for network in networks)


class FailedAuthLimiter:
    """Failed authentications (an unknown, malformed or revoked key) per client address, as a token bucket: an
    address that has used up its failures gets 429 with Retry-After instead of 401 until one is back. Only failures
    are counted, and only against the address that made them: a valid key is served whatever its address has
    failed, so guesses from one address (or from behind the same NAT) never lock out another client or a valid
    key. Per instance, like RateLimiter; at most `max_addresses` are tracked (the full buckets are dropped first)."""

    def __init__(self, limit: RateLimit, clock=time.monotonic, max_addresses: int = 100_000) -> None:
        self.limit, self.clock, self.max_addresses = limit, clock, max_addresses
        self.buckets: dict[str, tuple[float, float]] = {}  # address -> (tokens, at)

    def failed(self, address: str) -> None:
        """Count one failure of `address`; raise 429 when it has none left (the caller raises 401 otherwise)."""
        limit = self.limit
        if limit.per_second <= 0:
            return
        now = self.clock()
        tokens, at = self.buckets.get(address, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - at) * limit.per_second)
        if len(self.buckets) >= self.max_addresses and address not in self.buckets:
            self._forget_recovered(now)
        if tokens < 1.0:
            self.buckets[address] = (tokens, now)
            RATE_LIMITED.labels("none").inc()
            retry_after = max(1, math.ceil((1.0 - tokens) / limit.per_second))
            raise RateLimited(
                f"Too many failed authentications from this address; retry in {retry_after} s.",
                headers=limited_headers(limit.burst, retry_after),
            )
        self.buckets[address] = (tokens - 1.0, now)

    def _forget_recovered(self, now: float) -> None:
        limit = self.limit
        self.buckets = {
            address: (tokens, at)
            for address, (tokens, at) in self.buckets.items()
            if tokens + (now - at) * limit.per_second < limit.burst
        }
        if len(self.buckets) >= self.max_addresses:
            self.buckets.clear()
