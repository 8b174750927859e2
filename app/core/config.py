"""Settings for the whole service, read from TIERWISE_* environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, IPvAnyNetwork, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from app.core.i18n import LANGUAGE_TAG_PATTERN

DEVELOPMENT_PEPPER = "development-only-pepper"
# base64url of 32 bytes; the development default is public, so production refuses it (app/core/crypto.py).
DEVELOPMENT_ENCRYPTION_KEY = "ZGV2ZWxvcG1lbnQtb25seS1lbmNyeXB0aW9uLWtleSE"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERWISE_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    # A server URL such as postgresql://user@host:5432/tierwise. Unset: an embedded Postgres in data_dir.
    database_url: str | None = None
    data_dir: Path = Path(".tierwise")
    db_pool_size: int = Field(32, ge=1)
    db_max_overflow: int = Field(8, ge=0)
    db_pool_timeout_s: float = Field(5.0, gt=0)
    db_pool_warm: int = Field(4, ge=0)  # connections opened and warmed at startup (app.core.db.warm_pool)
    # A server that accepts and never answers (hung, frozen, a half-open network path) must not hold a request
    # longer than these: a new connection gives up after db_connect_timeout_s, a statement of a request after
    # db_command_timeout_s, a hot read's after read_timeout_s; the request then gets 503. Batch commands of the
    # CLI (demo load, tier runs, refreshes) wait as long as their statements take.
    db_connect_timeout_s: float = Field(5.0, gt=0)
    db_command_timeout_s: float = Field(30.0, gt=0)

    # Serve the hottest GETs in front of the router (app/core/hotpath.py); off, FastAPI serves them the same way.
    hot_reads: bool = True
    read_pool_size: int = Field(16, ge=1)  # the hot reads' own connections per worker
    read_timeout_s: float = Field(5.0, gt=0)  # a hot read's statement (one customer's rows) gives up after this

    # Read replicas (app/core/replicas.py): streaming standbys of the database, comma-separated URLs. The hot reads,
    # lists and reports go to one in rotation; writes, and reads that must see a write, to the primary. A replica
    # is out of rotation while it lags past either bound (bytes 0: no bound) or fails its check, which runs every
    # read_health_interval_s, bounded by read_health_timeout_s. Each replica has a pool of read_replica_pool_size
    # connections for read sessions and read_pool_size for the hot reads, per worker, opened as used.
    read_database_url: Annotated[list[str], NoDecode] = []
    read_max_lag_seconds: float = Field(5.0, gt=0)
    read_max_lag_bytes: int = Field(64 * 1_048_576, ge=0)
    read_health_interval_s: float = Field(1.0, gt=0, le=60)
    read_health_timeout_s: float = Field(1.0, gt=0, le=30)
    read_replica_pool_size: int = Field(8, ge=1)

    host: str = "127.0.0.1"
    port: int = 8000
    log_level: str = "INFO"

    # Keys are stored as HMAC-SHA256(pepper, key): a leaked table alone does not reveal usable keys.
    api_key_pepper: str = DEVELOPMENT_PEPPER
    # Resolved keys are kept this many seconds per instance (0: a query on every request). A revoked key stops
    # working at once on the instance that revoked it, and within this time on the others.
    api_key_cache_seconds: float = Field(5.0, ge=0, le=300)
    max_body_bytes: int = Field(1_048_576, ge=1024)
    max_import_body_bytes: int = Field(64 * 1_048_576, ge=1024)
    max_import_lines: int = Field(100_000, ge=1)
    max_event_batch: int = Field(10_000, ge=1)

    # Per-key rate limits by role (token bucket per key, per instance): sustained requests per second and burst.
    # A rate of 0 turns the limit off for that role. The app key carries a whole mobile fleet's traffic.
    rate_limit_app_per_s: float = Field(1000.0, ge=0)
    rate_limit_app_burst: int = Field(2000, ge=1)
    rate_limit_integration_per_s: float = Field(200.0, ge=0)
    rate_limit_integration_burst: int = Field(400, ge=1)
    rate_limit_admin_per_s: float = Field(50.0, ge=0)
    rate_limit_admin_burst: int = Field(200, ge=1)

    # Failed authentications (unknown or revoked keys) per client address: a bucket of this many, refilled at this
    # rate; past it, 429 with Retry-After. Valid keys are never held back by it. A rate of 0 turns it off.
    auth_failures_per_s: float = Field(0.2, ge=0)
    auth_failures_burst: int = Field(20, ge=1)
    # Proxies (addresses or networks, comma-separated) whose X-Forwarded-For is believed: a request from one of
    # them counts against the address it forwarded for. None by default: the connection's peer is the client.
    trusted_proxies: Annotated[list[IPvAnyNetwork], NoDecode] = []
    # Scopes given to a role beyond its preset (app.core.security.ROLE_SCOPES), as JSON: '{"integration":
    # ["customers:erase"]}'. Erasure, for one, is the admin's alone unless a role is given it here.
    role_grants: dict[Literal["app", "integration", "admin"], list[str]] = {}

    risk_assessment_valid_days: int = Field(365, ge=1)
    currency: str = "EUR"

    # Recommendations
    primary_policy: str = "wealth"  # the tier policy whose tiers propensities are learned per
    holdout_share: float = Field(0.05, ge=0, le=0.5)  # customers (stable by id) served the unpersonalised baseline
    prior_strength: float = Field(20.0, gt=0)  # pseudo-observations of the co-holding prior in each Beta posterior
    winback_boost: float = Field(5.0, ge=1)  # propensity multiplier for a product the customer held recently
    winback_days: int = Field(365, ge=1)
    # Popularity, co-holding and feedback counts are re-read this often per instance (feedback taken by an
    # instance refreshes its own at once); 0: on every request.
    ranking_stats_seconds: float = Field(5.0, ge=0, le=300)
    stats_refresh_minutes: int = Field(60, ge=0)  # 0: only `tierwise refresh-stats` refreshes co-holding stats
    # Offer states of customers who ask for recommendations are computed again this often when they no longer hold
    # (after midnight, after a write); 0: only `tierwise refresh-offer-states`, and each request for itself.
    offer_states_refresh_minutes: int = Field(10, ge=0)
    # The learned ranker is trained again this often (0: only `tierwise train-ranker`), on this many month pairs.
    ranker_retrain_hours: int = Field(0, ge=0)
    ranker_months: int = Field(12, ge=2, le=36)
    # The churn model is fitted again this often on the bank's history of declines (0: only `tierwise fit-churn`).
    churn_refit_hours: int = Field(0, ge=0)
    tier_run_workers: int = Field(2, ge=1, le=16)  # chunks of a tier run evaluated at once, each on a connection

    # Languages of labels and texts (app/core/i18n.py): the ones Accept-Language may choose (comma-separated), and
    # the one used when it chooses none of them. Texts missing in a language fall back to the default's.
    languages: Annotated[list[Annotated[str, Field(pattern=LANGUAGE_TAG_PATTERN)]], NoDecode] = ["en", "zh-CN"]
    default_language: Annotated[str, Field(pattern=LANGUAGE_TAG_PATTERN)] = "en"

    @field_validator("trusted_proxies", "languages", "read_database_url", mode="before")
    @classmethod
    def comma_separated(cls, value):
        return [part.strip() for part in value.split(",") if part.strip()] if isinstance(value, str) else value

    # Secrets at rest (webhook signing secrets, stored idempotent responses) are sealed with AES-256-GCM under this
    # key: base64url of 32 random bytes (`python -c "import secrets; print(secrets.token_urlsafe(32))"`).
    encryption_key: str = DEVELOPMENT_ENCRYPTION_KEY
    # An Idempotency-Key's first response is replayed for this long; expired keys are purged on the schedule.
    idempotency_key_hours: float = Field(24.0, gt=0, le=24 * 30)
    purge_minutes: int = Field(10, ge=0)  # how often expired keys and old deliveries are purged (0: never)

    # Many instances (app/core/leader.py, app/core/invalidation.py, app/core/shared_ratelimit.py): the scheduled
    # jobs run in the one process holding the leader's advisory lock, tried and checked every interval (a dead
    # leader is replaced within it); caches are dropped on a NOTIFY; with a Redis URL (redis://host:6379/0) rate
    # limits are counted there, shared by every instance, and per instance without one or while it is down.
    leader_interval_seconds: float = Field(5.0, gt=0, le=300)
    redis_url: str | None = None
    redis_key_prefix: str = "tierwise:ratelimit:"  # deployments sharing one Redis each take a prefix of their own
    redis_timeout_s: float = Field(0.25, gt=0, le=10)  # one Redis call; past it the request is limited locally
    # Monthly partitions (app/core/partitions.py): how often the job runs (0: never), the months created ahead of
    # this one, and the months each table keeps (older months are dropped with their rows).
    partition_maintenance_minutes: int = Field(360, ge=0)
    partitions_ahead_months: int = Field(3, ge=1, le=24)
    retention_months_events: int = Field(13, ge=1)  # customer_event, feedback_event, served lists and items
    retention_months_transitions: int = Field(84, ge=1)  # tier_transition: seven years
    retention_months_audit: int = Field(120, ge=1)  # audit_event: ten years
    # webhook_delivery, webhook_attempt: delivered ones go after TIERWISE_WEBHOOK_RETENTION_DAYS row by row; this
    # drops whole months, dead and pending deliveries included
    retention_months_webhooks: int = Field(3, ge=1)

    # Re-tiering after intake (app/customers/retier.py): activity events and the NDJSON import mark their customers,
    # and each instance's worker re-tiers them in batches of this size, every interval (a full batch: at once).
    retier_worker: bool = True
    retier_interval_seconds: float = Field(2.0, gt=0, le=300)
    retier_batch_size: int = Field(1000, ge=1, le=100_000)

    # Webhooks (app/webhooks): the delivery worker of each instance, its pace and its retries.
    webhook_worker: bool = True
    webhook_poll_seconds: float = Field(1.0, gt=0, le=60)  # how often an idle worker looks for work
    webhook_concurrency: int = Field(8, ge=1, le=256)  # deliveries in flight per instance
    webhook_timeout_s: float = Field(10.0, gt=0, le=120)  # one POST, connect to last byte
    webhook_max_attempts: int = Field(16, ge=1, le=100)  # then the delivery is dead (kept for a manual redeliver)
    webhook_backoff_base_s: float = Field(2.0, gt=0)  # retry n waits a random time in [0, min(max, base * 2^(n-1))]
    webhook_backoff_max_s: float = Field(3600.0, gt=0)
    webhook_retention_days: float = Field(7.0, gt=0)  # delivered deliveries (and their events) are kept this long
    webhook_secret_overlap_hours: float = Field(24.0, ge=0)  # after a rotation the old secret also signs this long
    # Comma-separated hosts a subscription may name ("hooks.bank.example,.internal.example": a leading dot allows
    # subdomains); empty: any host, loopback included. Set it in production.
    webhook_allowed_hosts: str = ""

    @model_validator(mode="after")
    def refuse_unsafe_defaults(self) -> "Settings":
        if self.default_language not in self.languages:
            self.languages = [*self.languages, self.default_language]
        if self.environment == "production":
            if self.api_key_pepper == DEVELOPMENT_PEPPER or len(self.api_key_pepper) < 16:
                raise ValueError("TIERWISE_API_KEY_PEPPER must be set to a secret of 16+ characters in production")
            if not self.database_url:
                raise ValueError("TIERWISE_DATABASE_URL is required in production")
            if any(network.prefixlen == 0 for network in self.trusted_proxies):
                raise ValueError(
                    "TIERWISE_TRUSTED_PROXIES must name the proxies: trusting every address lets any "
                    "client choose the address its failed authentications count against"
                )
            if self.encryption_key == DEVELOPMENT_ENCRYPTION_KEY:
                raise ValueError("TIERWISE_ENCRYPTION_KEY must be set in production (base64url of 32 random bytes)")
        from app.core.crypto import key_bytes

        key_bytes(self.encryption_key)  # a key that is not 32 bytes fails at start, not at the first write
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
