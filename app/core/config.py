"""Settings for the whole service, read from TIERWISE_* environment variables."""

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_PEPPER = "development-only-pepper"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TIERWISE_", env_file=".env", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    # A server URL such as postgresql://user@host:5432/tierwise. Unset: an embedded Postgres in data_dir.
    database_url: str | None = None
    data_dir: Path = Path(".tierwise")
    db_pool_size: int = Field(32, ge=1)
    db_max_overflow: int = Field(8, ge=0)
    db_pool_timeout_s: float = Field(5.0, gt=0)

    # Serve the hottest GETs in front of the router (app/core/hotpath.py); off, FastAPI serves them the same way.
    hot_reads: bool = True
    read_pool_size: int = Field(16, ge=1)  # the hot reads' own connections per worker

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
    tier_run_workers: int = Field(2, ge=1, le=16)  # chunks of a tier run evaluated at once, each on a connection

    @model_validator(mode="after")
    def refuse_unsafe_defaults(self) -> "Settings":
        if self.environment == "production":
            if self.api_key_pepper == DEVELOPMENT_PEPPER or len(self.api_key_pepper) < 16:
                raise ValueError("TIERWISE_API_KEY_PEPPER must be set to a secret of 16+ characters in production")
            if not self.database_url:
                raise ValueError("TIERWISE_DATABASE_URL is required in production")
        return self


@lru_cache
def get_settings() -> Settings:
    return Settings()
