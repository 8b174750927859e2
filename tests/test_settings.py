"""Settings: production refuses to start with the development defaults (or a setting that opens a hole), and
says which; development and tests start with them."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.core.config import DEVELOPMENT_ENCRYPTION_KEY, DEVELOPMENT_PEPPER, Settings
from tests.factories import ENCRYPTION_KEY

ROOT = Path(__file__).resolve().parents[1]
SAFE = {
    "environment": "production",
    "api_key_pepper": "a-secret-of-sixteen-or-more",
    "database_url": "postgresql://tierwise@db.internal:5432/tierwise",
    "encryption_key": ENCRYPTION_KEY,
}


@pytest.mark.parametrize(
    ("unsafe", "named"),
    [
        ({"api_key_pepper": DEVELOPMENT_PEPPER}, "TIERWISE_API_KEY_PEPPER"),
        ({"api_key_pepper": "short-secret"}, "TIERWISE_API_KEY_PEPPER"),
        ({"database_url": None}, "TIERWISE_DATABASE_URL"),
        ({"trusted_proxies": "10.0.0.0/8,0.0.0.0/0"}, "TIERWISE_TRUSTED_PROXIES"),
        ({"trusted_proxies": "::/0"}, "TIERWISE_TRUSTED_PROXIES"),
        ({"encryption_key": DEVELOPMENT_ENCRYPTION_KEY}, "TIERWISE_ENCRYPTION_KEY"),
    ],
    ids=[
        "development pepper",
        "short pepper",
        "embedded database",
        "every IPv4 proxy",
        "every IPv6 proxy",
        "development encryption key",
    ],
)
def test_production_refuses_an_unsafe_setting_and_names_it(unsafe, named):
    with pytest.raises(ValidationError, match=named):
        Settings(**{**SAFE, **unsafe})
    Settings(**{**SAFE, **unsafe, "environment": "development"})  # a laptop starts with it


def test_production_starts_with_its_secrets_set():
    settings = Settings(**SAFE, trusted_proxies="10.0.0.0/8")
    assert settings.environment == "production" and [str(n) for n in settings.trusted_proxies] == ["10.0.0.0/8"]


def test_the_server_does_not_start_in_production_with_the_development_pepper():
    env = {name: value for name, value in os.environ.items() if not name.startswith("TIERWISE_")}
    env |= {"TIERWISE_ENVIRONMENT": "production", "TIERWISE_DATABASE_URL": SAFE["database_url"]}
    refused = subprocess.run(
        [str(Path(sys.executable).parent / "tierwise"), "serve"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode != 0 and "TIERWISE_API_KEY_PEPPER" in refused.stderr
