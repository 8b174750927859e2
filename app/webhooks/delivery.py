"""The delivery worker: fans committed outbox events out to subscriptions and POSTs them, signed
(app/webhooks/signing.py), retried with exponential backoff and full jitter, dead after the last attempt.

Every instance runs one (started in the app's lifespan); they share the work through the database:
- Fan-out: one instance at a time (a transaction-scoped advisory lock; the others skip it) turns the oldest
  events not yet fanned out into one delivery per matching subscription, in event order, set-based.
- Claim: a delivery is claimed with SELECT ... FOR UPDATE SKIP LOCKED and leased (leased_until: twice the send
  timeout plus a margin) in a short transaction of its own; no other worker claims it while the lease holds, and the
  attempt counts from the claim. The HTTP call runs with no transaction open.
- Outcome: 2xx: delivered. Otherwise the attempt is logged (status code or error class, duration) and the
  delivery is due again after a random delay in [0, min(backoff_max, backoff_base * 2^(attempts - 1))] (full
  jitter), or dead after TIERWISE_WEBHOOK_MAX_ATTEMPTS; dead deliveries wait for a manual redeliver. A delivery
  that succeeds after failing tells that the receiver is back: the subscription's other retries are due at once.
- Order: a delivery is claimed only when no earlier delivery of the same subscription and customer is still
  pending, so one customer's events arrive in order, one at a time, while other customers' go on in parallel
  (a dead one no longer holds the next back). Events without a customer are not ordered.
- At least once: a worker that dies after sending and before recording leaves its lease to expire, and the
  delivery is sent again with the same Tierwise-Event-Id: receivers de-duplicate on it.
Paused subscriptions get their deliveries made and kept; they are sent on resume.

Logs name deliveries, subscriptions, event types and outcomes: never a URL (it may carry a token), a payload or a
secret."""

import asyncio
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime

import httpx
from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import text

from app.core import tracing
from app.core.config import Settings
from app.core.crypto import CannotOpen
from app.webhooks.service import host_allowed, open_secret
from app.webhooks.signing import signature_header

log = logging.getLogger(__name__)

DELIVERIES = Counter("tierwise_webhook_deliveries_total", "Webhook deliveries finished, by outcome", ["outcome"])
ATTEMPTS = Counter(
    "tierwise_webhook_attempts_total", "Webhook POSTs, by result (2xx, 4xx, 5xx or error class)", ["result"]
)
ATTEMPT_SECONDS = Histogram("tierwise_webhook_attempt_seconds", "Time of one webhook POST")
# Database-wide figures each instance measures: with several processes, the latest measurement (app/core/metrics.py)
QUEUE_LAG = Gauge(
    "tierwise_webhook_queue_lag_seconds",
    "Age of the oldest event not yet delivered (0: none)",
    multiprocess_mode="mostrecent",
)
PENDING = Gauge("tierwise_webhook_pending_deliveries", "Deliveries waiting to be sent", multiprocess_mode="mostrecent")

FAN_OUT_LOCK = 0x7457_6862  # the advisory lock key of fan-out (any constant no other code uses)
FAN_OUT_BATCH = 5000
USER_AGENT = "Tierwise-Webhooks/1"

_FAN_OUT = text("""
WITH batch AS (
    SELECT id, event_type, customer_id, created_at FROM webhook_event
    WHERE fanned_out_at IS NULL ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED
), made AS (
    INSERT INTO webhook_delivery (subscription_id, event_id, customer_id, next_attempt_at)
    SELECT s.id, b.id, b.customer_id, now() FROM batch b
    JOIN webhook_subscription s ON b.event_type = ANY(s.event_types) AND s.created_at <= b.created_at
    ORDER BY b.id, s.id
    ON CONFLICT (subscription_id, event_id, created_at) DO NOTHING
    RETURNING 1
), marked AS (
    UPDATE webhook_event e SET fanned_out_at = now() FROM batch b WHERE e.id = b.id RETURNING 1
)
SELECT (SELECT count(*) FROM marked) AS events, (SELECT count(*) FROM made) AS deliveries
""")

_CLAIM = text("""
WITH due AS (
    SELECT d.id FROM webhook_delivery d
    JOIN webhook_subscription s ON s.id = d.subscription_id AND s.status = 'active'
    WHERE d.state = 'pending' AND d.next_attempt_at <= now()
      AND (d.leased_until IS NULL OR d.leased_until < now())
      AND NOT EXISTS (SELECT 1 FROM webhook_delivery e
                      WHERE e.subscription_id = d.subscription_id AND e.customer_id = d.customer_id
                        AND e.state = 'pending' AND e.id < d.id)
    ORDER BY d.next_attempt_at, d.id
    LIMIT :limit
    FOR UPDATE OF d SKIP LOCKED
)
UPDATE webhook_delivery d SET leased_until = now() + make_interval(secs => :lease), attempts = d.attempts + 1
FROM due, webhook_event ev, webhook_subscription s
WHERE d.id = due.id AND ev.id = d.event_id AND s.id = d.subscription_id
RETURNING d.id, d.attempts, d.subscription_id, ev.event_id, ev.event_type, ev.created_at, ev.payload::text AS payload,
          ev.traceparent,
          s.url, s.secret_sealed,
          CASE WHEN s.previous_secret_expires_at > now() THEN s.previous_secret_sealed END AS previous_secret_sealed
""")

# The outcome of one claimed attempt: only if the claim still stands (same attempt number, still pending). A
# success after failures means the receiver is back: the subscription's other retries are due now, not after
# their backoff.
_RECORD = text("""
WITH updated AS (
    UPDATE webhook_delivery SET
        state = CASE WHEN :delivered THEN 'delivered' WHEN attempts >= :max_attempts THEN 'dead' ELSE 'pending' END,
        finished_at = CASE WHEN :delivered OR attempts >= :max_attempts THEN now() END,
        next_attempt_at = CASE WHEN :delivered THEN next_attempt_at
                               ELSE now() + make_interval(secs => :delay) END,
        leased_until = NULL, last_status_code = :status_code, last_error = :error
    WHERE id = :delivery_id AND attempts = :attempt AND state = 'pending'
    RETURNING state
), woken AS (
    UPDATE webhook_delivery SET next_attempt_at = now()
    WHERE CAST(:wake AS boolean) AND subscription_id = :subscription_id AND state = 'pending' AND attempts > 0
      AND next_attempt_at > now()
), logged AS (
    INSERT INTO webhook_attempt (delivery_id, at, duration_ms, status_code, error)
    SELECT :delivery_id, :at, :duration_ms, :status_code, :error
    WHERE EXISTS (SELECT 1 FROM webhook_delivery WHERE id = :delivery_id)
)
SELECT state FROM updated
""")

_QUEUE = text("""
SELECT (SELECT count(*) FROM webhook_delivery WHERE state = 'pending') AS pending,
       extract(epoch FROM now() - least(
           (SELECT min(created_at) FROM webhook_event WHERE fanned_out_at IS NULL),
           (SELECT ev.created_at FROM webhook_delivery d JOIN webhook_event ev ON ev.id = d.event_id
            WHERE d.state = 'pending' ORDER BY d.id LIMIT 1))) AS lag
""")


@dataclass(frozen=True)
class Claim:
    delivery_id: int
    attempt: int
    subscription_id: int
    event_id: str
    event_type: str
    created_at: datetime
    payload: str  # JSON text, as stored
    url: str
    secret_sealed: bytes
    previous_secret_sealed: bytes | None
    traceparent: str | None = None  # of the change that emitted the event

    def body(self) -> bytes:
        head = json.dumps(
            {"id": self.event_id, "type": self.event_type, "created_at": self.created_at.isoformat()},
            separators=(",", ":"),
        )
        return (head[:-1] + ',"data":' + self.payload + "}").encode()


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def result(self) -> str:
        return f"{self.status_code // 100}xx" if self.status_code is not None else (self.error or "error")


def backoff_delay(attempts: int, settings: Settings) -> float:
    """Full jitter: a random delay in [0, min(max, base * 2^(attempts - 1))]."""
    ceiling = min(settings.webhook_backoff_max_s, settings.webhook_backoff_base_s * 2 ** min(attempts - 1, 60))
    return random.uniform(0, ceiling)


class DeliveryWorker:
    """One instance's worker. `run` loops until cancelled; tests drive `fan_out`, `claim` and `deliver`."""

    def __init__(self, settings: Settings, sessionmaker, client: httpx.AsyncClient | None = None) -> None:
        for name in ("httpx", "httpcore"):  # they log each request's URL at INFO, and a URL may carry a token
            logging.getLogger(name).setLevel(logging.WARNING)
        self.settings, self.sessionmaker = settings, sessionmaker
        self.client = client or httpx.AsyncClient(
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},  # HTTPS_PROXY and NO_PROXY apply
            limits=httpx.Limits(max_connections=settings.webhook_concurrency),
            timeout=httpx.Timeout(settings.webhook_timeout_s),
        )
        self.lease_s = 2 * settings.webhook_timeout_s + 10

    async def fan_out(self) -> int:
        """Deliveries for the oldest events not fanned out yet (when no other instance is doing it); how many
        events were fanned out."""
        async with self.sessionmaker() as session, session.begin():
            if not await session.scalar(text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": FAN_OUT_LOCK}):
                return 0
            row = (await session.execute(_FAN_OUT, {"batch": FAN_OUT_BATCH})).one()
        return row.events

    async def claim(self, limit: int) -> list[Claim]:
        async with self.sessionmaker() as session, session.begin():
            rows = (await session.execute(_CLAIM, {"limit": limit, "lease": self.lease_s})).all()
        return [
            Claim(
                delivery_id=r.id,
                attempt=r.attempts,
                subscription_id=r.subscription_id,
                event_id=str(r.event_id),
                event_type=r.event_type,
                created_at=r.created_at,
                payload=r.payload,
                url=r.url,
                secret_sealed=r.secret_sealed,
                previous_secret_sealed=r.previous_secret_sealed,
                traceparent=r.traceparent,
            )
            for r in rows
        ]

    async def send(self, claim: Claim) -> Outcome:
        """One signed POST; never raises for what the receiver or the network does."""
        if not host_allowed(claim.url, self.settings.webhook_allowed_hosts):
            return Outcome(None, "HostNotAllowed", 0)
        try:
            secrets_ = [open_secret(self.settings, claim.secret_sealed)]
            if claim.previous_secret_sealed is not None:
                secrets_.append(open_secret(self.settings, claim.previous_secret_sealed))
        except CannotOpen:
            return Outcome(None, "SecretUnreadable", 0)
        body = claim.body()
        headers = {
            "Content-Type": "application/json",
            "Tierwise-Event-Id": claim.event_id,
            "Tierwise-Event-Type": claim.event_type,
            "Tierwise-Signature": signature_header(secrets_, int(time.time()), body),
            "traceparent": tracing.outgoing(claim.traceparent),  # the change's trace, a new span per attempt
        }
        started = time.perf_counter()
        status, error = None, None
        try:
            async with asyncio.timeout(self.settings.webhook_timeout_s):
                async with self.client.stream("POST", claim.url, content=body, headers=headers) as response:
                    status = response.status_code
                    read = 0
                    async for chunk in response.aiter_raw():  # drain a little for keep-alive, never a large body
                        read += len(chunk)
                        if read > 65536:
                            break
        except TimeoutError:
            error = "Timeout"
        except Exception as exc:  # connection refused, reset, TLS, an invalid URL: the class is the outcome
            error = type(exc).__name__
        if status is not None and not 200 <= status < 300:
            error = f"HTTP {status}"
        duration = time.perf_counter() - started
        ATTEMPT_SECONDS.observe(duration)
        return Outcome(status, error, round(duration * 1000))

    async def record(self, claim: Claim, outcome: Outcome) -> str | None:
        """Store the outcome; the delivery's state after it (None: the claim no longer stood)."""
        params = {
            "delivery_id": claim.delivery_id,
            "attempt": claim.attempt,
            "delivered": outcome.delivered,
            "subscription_id": claim.subscription_id,
            "wake": outcome.delivered and claim.attempt > 1,
            "max_attempts": self.settings.webhook_max_attempts,
            "status_code": outcome.status_code,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
            "delay": 0.0 if outcome.delivered else backoff_delay(claim.attempt, self.settings),
        }
        async with self.sessionmaker() as session, session.begin():
            params["at"] = await session.scalar(text("SELECT now()"))
            state = await session.scalar(_RECORD, params)
        ATTEMPTS.labels(outcome.result).inc()
        if state in ("delivered", "dead"):
            DELIVERIES.labels(state).inc()
        log.info(
            "webhook attempt",
            extra={
                "delivery_id": claim.delivery_id,
                "subscription_id": claim.subscription_id,
                "event_type": claim.event_type,
                "attempt": claim.attempt,
                "result": outcome.result,
                "state": state,
                "duration_ms": outcome.duration_ms,
            },
        )
        return state

    async def deliver(self, claim: Claim) -> str | None:
        return await self.record(claim, await self.send(claim))

    async def update_queue_metrics(self) -> tuple[int, float]:
        async with self.sessionmaker() as session:
            row = (await session.execute(_QUEUE)).one()
        lag = float(row.lag or 0)
        PENDING.set(row.pending)
        QUEUE_LAG.set(lag)
        return row.pending, lag

    async def run(self) -> None:
        """Fan out, claim as many deliveries as there are free slots, send each in a task; when idle, wait for a
        slot to free (a finished delivery may let the same customer's next one go) or the poll interval."""
        in_flight: set[asyncio.Task] = set()
        metrics_due = 0.0
        try:
            while True:
                claimed = []
                free = self.settings.webhook_concurrency - len(in_flight)
                if free > 0:
                    try:
                        await self.fan_out()
                        claimed = await self.claim(free)
                        if time.monotonic() >= metrics_due:
                            metrics_due = time.monotonic() + 5
                            await self.update_queue_metrics()
                    except Exception:
                        log.exception("webhook worker round failed")
                    in_flight |= {asyncio.create_task(self._deliver_logged(claim)) for claim in claimed}
                if claimed and len(claimed) == free:
                    continue
                if in_flight:
                    done, in_flight = await asyncio.wait(
                        in_flight, timeout=self.settings.webhook_poll_seconds, return_when=asyncio.FIRST_COMPLETED
                    )
                else:
                    await asyncio.sleep(self.settings.webhook_poll_seconds)
        finally:
            if in_flight:  # let sends in flight finish (bounded by their timeout); the rest are retried by lease
                await asyncio.wait(in_flight, timeout=self.settings.webhook_timeout_s)
                for task in in_flight:
                    task.cancel()
            await self.client.aclose()

    async def _deliver_logged(self, claim: Claim) -> None:
        try:
            await self.deliver(claim)
        except Exception:
            log.exception("webhook delivery failed to record", extra={"delivery_id": claim.delivery_id})
