"""The `tierwise` command, run as an operator runs it (the installed entry point, in a process of its own) against
a database of its own: migrate, demo data, API keys, tier runs, statistics and offer-state refreshes, the spec."""

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
TIERWISE = Path(sys.executable).parent / "tierwise"
PEPPER = "cli-pepper-0123456789"
CUSTOMERS = 25


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="module")
def tierwise(scratch_database):
    """tierwise(*args) -> CompletedProcess, on an empty database of the test server."""
    env = {
        **os.environ,
        "TIERWISE_DATABASE_URL": _plain(scratch_database()),
        "TIERWISE_API_KEY_PEPPER": PEPPER,
        "TIERWISE_LOG_LEVEL": "WARNING",
    }

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(TIERWISE), *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120)

    run.dsn = env["TIERWISE_DATABASE_URL"]
    run.migrated = _ok(run("migrate"))
    return run


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


async def test_migrate_then_a_demo_bank_tiered_and_refreshed(tierwise):
    assert "database at head" in tierwise.migrated
    demo = json.loads(_ok(tierwise("demo", "--customers", str(CUSTOMERS), "--seed", "3")))
    assert demo["tier_run"]["status"] == "succeeded" and demo["tier_run"]["processed"] == CUSTOMERS
    assert set(demo["policies_created"]) == {"wealth", "lifecycle", "loyalty", "needs"}
    assert demo["benefits_created"] >= 10 and 0 < demo["benefit_uses"] <= CUSTOMERS
    run = json.loads(_ok(tierwise("tier-run", "--all")))
    assert (run["status"], run["processed"], run["total"]) == ("succeeded", CUSTOMERS, CUSTOMERS)
    one = json.loads(_ok(tierwise("tier-run", "--policy", "wealth")))
    assert (one["policy"], one["status"]) == ("wealth", "succeeded")
    assert tierwise("tier-run").returncode == 2  # neither --all nor --policy
    stats = json.loads(_ok(tierwise("refresh-stats")))
    assert stats and all(isinstance(value, int) for value in stats.values())
    everyone = json.loads(_ok(tierwise("refresh-offer-states", "--everyone")))
    assert everyone["offer_states_stored"] == CUSTOMERS
    assert json.loads(_ok(tierwise("refresh-offer-states")))["offer_states_stored"] == 0  # all still hold
    connection = await asyncpg.connect(tierwise.dsn)
    try:
        assert await connection.fetchval("SELECT count(*) FROM customer") == CUSTOMERS
        assert await connection.fetchval("SELECT count(*) FROM tier_run WHERE status = 'succeeded'") == 3
        assert await connection.fetchval("SELECT count(DISTINCT customer_id) FROM tier_assignment") == CUSTOMERS
    finally:
        await connection.close()


async def test_api_keys_are_created_listed_and_revoked(tierwise):
    key = _ok(tierwise("api-keys", "create", "--name", "core-feed", "--role", "integration")).strip()
    assert key.startswith("tw_") and len(key) > 40
    listed = _ok(tierwise("api-keys", "list"))
    row = next(line.split("\t") for line in listed.splitlines() if "\tcore-feed\t" in line)
    assert row[2] == "integration" and row[3] == f"tw_{key.split('_')[1]}_…" and row[-1] == "active"
    assert key not in listed
    assert _ok(tierwise("api-keys", "revoke", row[0])).strip() == f"revoked {row[0]}"
    assert "\tcore-feed\t" not in _ok(tierwise("api-keys", "list"))
    connection = await asyncpg.connect(tierwise.dsn)
    try:
        assert await connection.fetchval("SELECT revoked_at IS NOT NULL FROM api_key WHERE name = 'core-feed'")
    finally:
        await connection.close()


def test_openapi_writes_the_exported_spec(tierwise, tmp_path):
    target = tmp_path / "spec.json"
    _ok(tierwise("openapi", "--output", str(target)))
    assert target.read_text() == (ROOT / "openapi" / "openapi.json").read_text()
