"""Per-key rate limits: a token bucket per API key, sized by the key's role, checked right after authentication.

The buckets live in the process: each instance enforces the limit on its own, so behind a load balancer with N
instances a key may reach up to N times its configured rate. That bounds a runaway client per instance, which is
the point; a fleet-wide quota belongs in the gateway.
"""

import math
import time
from dataclasses import dataclass

from app.core.config import Settings
from app.core.errors import AppError


class RateLimited(AppError):
    status, title, slug = 429, "Too many requests", "rate-limited"


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

    def check(self, key_id: int, role: str) -> None:
        """Take one token from the key's bucket, or raise 429 with Retry-After (whole seconds until one is back).

        No await inside: under asyncio the read-modify-write of a bucket cannot interleave."""
        limit = self.limits.get(role)
        if limit is None or limit.per_second <= 0:
            return
        now = self.clock()
        tokens, at = self.buckets.get(key_id, (float(limit.burst), now))
        tokens = min(float(limit.burst), tokens + (now - at) * limit.per_second)
        if tokens < 1.0:
            self.buckets[key_id] = (tokens, now)
            retry_after = max(1, math.ceil((1.0 - tokens) / limit.per_second))
            raise RateLimited(f"This API key (role {role}) is limited to {limit.per_second:g} requests per second "
                              f"with bursts of {limit.burst}; retry in {retry_after} s.",
                              headers={"Retry-After": str(retry_after)})
        self.buckets[key_id] = (tokens - 1.0, now)
